//! Migrations per service schema, and the start-up check that refuses a schema that is behind.

use std::path::Path;
use std::time::Duration;

use sqlx::Connection;
use sqlx::migrate::Migrator;
use wharf_runtime::db::{self, SchemaError, SchemaMigrations};

use wharf_testkit::FreshDatabase;

async fn fixture(version: &str) -> SchemaMigrations {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/migrations")
        .join(version);
    let migrator = Migrator::new(dir).await.expect("fixture migrations");
    SchemaMigrations::new("widgets", "widgets", migrator)
}

/// A fresh database is "behind", naming every missing migration and the command to run;
/// after `migrate` the check passes and the tables are in the service's own schema.
#[tokio::test]
async fn behind_schema_is_refused_until_migrated() {
    let database = FreshDatabase::create().await.expect("fresh database");
    let schema = fixture("v1").await;
    let pool = db::connect_lazy(&database.config, schema.schema).unwrap();

    let err = db::ensure_current(&pool, &schema).await.unwrap_err();
    assert!(
        matches!(err, SchemaError::Behind { ref missing, .. } if missing.len() == 2),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("run `wharf migrate`"), "{message}");
    assert!(
        message.contains("migration 1 (create widgets)"),
        "{message}"
    );

    let report = db::migrate(&database.config, &schema).await.unwrap();
    assert_eq!(report.applied, vec![1, 2]);
    db::ensure_current(&pool, &schema)
        .await
        .expect("current after migrate");

    let in_schema: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'widgets' AND table_name = 'widgets'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        in_schema, 1,
        "the migration's unqualified table lands in the service schema"
    );

    let again = db::migrate(&database.config, &schema).await.unwrap();
    assert!(again.applied.is_empty(), "migrate is idempotent");
    pool.close().await;
    database.drop_now().await;
}

/// A binary that knows a newer migration refuses to start on the older schema, naming only the
/// missing one; the older binary accepts the newer schema (rolling deploys).
#[tokio::test]
async fn newer_binary_refuses_older_schema() {
    let database = FreshDatabase::create().await.expect("fresh database");
    let v1 = fixture("v1").await;
    let v2 = fixture("v2").await;
    db::migrate(&database.config, &v1).await.unwrap();
    let pool = db::connect_lazy(&database.config, v2.schema).unwrap();

    let err = db::ensure_current(&pool, &v2).await.unwrap_err();
    assert!(
        matches!(err, SchemaError::Behind { ref missing, .. } if missing.iter().map(|m| m.0).collect::<Vec<_>>() == [3]),
        "{err}"
    );

    db::migrate(&database.config, &v2).await.unwrap();
    db::ensure_current(&pool, &v2).await.unwrap();
    db::ensure_current(&pool, &v1)
        .await
        .expect("an older binary runs on a newer schema");
    pool.close().await;
    database.drop_now().await;
}

/// An applied migration whose file changed afterwards is reported, not silently accepted.
#[tokio::test]
async fn modified_migration_is_refused() {
    let database = FreshDatabase::create().await.expect("fresh database");
    let schema = fixture("v1").await;
    db::migrate(&database.config, &schema).await.unwrap();
    let pool = db::connect_lazy(&database.config, schema.schema).unwrap();
    sqlx::query("UPDATE widgets._sqlx_migrations SET checksum = '\\x00' WHERE version = 2")
        .execute(&pool)
        .await
        .unwrap();

    let err = db::ensure_current(&pool, &schema).await.unwrap_err();
    assert!(
        matches!(err, SchemaError::Modified { version: 2, .. }),
        "{err}"
    );
    pool.close().await;
    database.drop_now().await;
}

/// A pool of one connection: whichever connection it hands out is the one it has.
fn single_connection_pool(database: &FreshDatabase) -> sqlx::PgPool {
    let config = db::DatabaseConfig {
        max_connections: 1,
        ..database.config.clone()
    };
    db::connect_lazy(&config, "public").unwrap()
}

async fn backend_pid(conn: &mut sqlx::PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
}

/// A kept connection stays out of the pool (the next acquire gets it back, the pool has none
/// to give), and `trim` hands it back once it has lingered.
#[tokio::test]
async fn held_connections_stay_out_of_the_pool_until_trimmed() {
    let database = FreshDatabase::create().await.expect("fresh database");
    let pool = single_connection_pool(&database);
    let held = db::HeldConnections::new(pool.clone(), Duration::ZERO);

    let mut conn = held.acquire().await.unwrap();
    let pid = backend_pid(&mut conn).await.unwrap();
    held.keep(conn);
    assert_eq!(held.held(), 1);
    assert!(
        pool.try_acquire().is_none(),
        "the pool's only connection is held"
    );
    let mut again = held.acquire().await.unwrap();
    assert_eq!(
        backend_pid(&mut again).await.unwrap(),
        pid,
        "the held connection is reused"
    );
    held.keep(again);

    held.trim();
    assert_eq!(held.held(), 0);
    // Back in the pool: the pool's one connection, the same backend.
    let mut pooled = pool.acquire().await.unwrap();
    assert_eq!(backend_pid(&mut pooled).await.unwrap(), pid);
    drop(pooled);
    pool.close().await;
    database.drop_now().await;
}

/// A held connection dropped instead of kept (an error, a cancelled call) is closed: the
/// transaction it was in, unknown to sqlx, never reaches the next borrower.
#[tokio::test]
async fn a_held_connection_dropped_mid_transaction_is_closed_not_pooled() {
    let database = FreshDatabase::create().await.expect("fresh database");
    let pool = single_connection_pool(&database);
    let held = db::HeldConnections::new(pool.clone(), Duration::ZERO);

    let mut conn = held.acquire().await.unwrap();
    let pid = backend_pid(&mut conn).await.unwrap();
    // What a begin cut short leaves: a transaction PostgreSQL has and sqlx does not count.
    sqlx::raw_sql("BEGIN; SET LOCAL synchronous_commit = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);

    // The pool's only connection slot frees once the dropped one is closed.
    let mut next = pool.acquire().await.unwrap();
    assert_ne!(
        backend_pid(&mut next).await.unwrap(),
        pid,
        "a fresh session, not the one left inside a transaction"
    );
    let synchronous: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut *next)
        .await
        .unwrap();
    assert_eq!(
        synchronous, "on",
        "nothing of the dropped transaction carried over"
    );
    drop(next);
    pool.close().await;
    database.drop_now().await;
}

/// A connection used moments ago is handed out without a ping. If its server process died
/// meanwhile, the one statement that finds out fails and the pool discards the connection;
/// the next acquire gets a fresh one. (Should the test itself take longer than
/// `PING_IDLE_AFTER` to get there, the ping finds the dead connection first and even that one
/// statement succeeds — on a fresh connection either way.)
#[tokio::test]
async fn a_dead_recent_connection_costs_one_failed_statement() {
    let database = FreshDatabase::create().await.expect("fresh database");
    let pool = single_connection_pool(&database);
    let mut conn = pool.acquire().await.unwrap();
    let pid = backend_pid(&mut conn).await.unwrap();
    drop(conn);

    let mut admin = sqlx::PgConnection::connect(&database.config.url)
        .await
        .unwrap();
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(killed);

    let mut next = pool.acquire().await.unwrap();
    let new_pid = match backend_pid(&mut next).await {
        Ok(new_pid) => new_pid,
        Err(err) => {
            // The dead connection failed its one statement, with an error the services
            // answer UNAVAILABLE for; the pool gives a fresh one.
            assert!(db::is_unreachable(&err), "{err:?} reads as unreachable");
            drop(next);
            next = pool.acquire().await.unwrap();
            backend_pid(&mut next)
                .await
                .expect("a second statement does not fail")
        }
    };
    assert_ne!(new_pid, pid, "a fresh connection, not the dead one");
    drop(next);
    pool.close().await;
    database.drop_now().await;
}
