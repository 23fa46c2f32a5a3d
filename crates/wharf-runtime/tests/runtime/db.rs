//! Migrations per service schema, and the start-up check that refuses a schema that is behind.

use std::path::Path;

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
