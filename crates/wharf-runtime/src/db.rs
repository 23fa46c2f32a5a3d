//! PostgreSQL pools, per-service schemas and migrations.
//!
//! One cluster, one schema per service (ARCHITECTURE §5). Each service crate owns its
//! migrations and describes them with a [`SchemaMigrations`]; the migration bookkeeping table
//! lives inside the service's schema (`<schema>._sqlx_migrations`), so services migrate
//! independently.
//!
//! Migrations are a separate step (`wharf migrate`, a Kubernetes Job), never run at service
//! start-up where replicas would race. A service calls [`ensure_current`] instead, which refuses
//! to start on a schema that is behind, naming the command to run.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool, Postgres};

/// The command that brings every schema up to date.
pub const MIGRATE_COMMAND: &str = "wharf migrate";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long a caller waits for a pooled connection before the call fails `UNAVAILABLE`.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Server-side bound on any statement, so a stuck query cannot hold a connection forever.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "postgres://wharf@127.0.0.1:15432/wharf".to_owned(),
            max_connections: 16,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// A pooled connection idle for longer than this is pinged before it is handed out.
///
/// One that was in use moments ago is not: a ping is a round trip of its own, and on a busy
/// service it would add one to every transaction. Should such a connection have died in the
/// meantime (the server restarted), the statement that finds out fails like any lost
/// connection would mid-transaction, and the pool closes the connection when it comes back
/// (its release ping fails) — so one call fails, and the next gets a fresh connection.
pub const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Whether `err` means the database could not be reached (down, restarting, the connection
/// lost) rather than that the statement was wrong: callers answer `UNAVAILABLE`, retry later.
///
/// Besides the pool's own errors and I/O errors, this is what a connection that died while
/// idle in the pool reports on its next statement: the server's goodbye (`57P01`-`57P03`,
/// shutting down or restarting, and class `08`, connection exceptions) or a protocol error
/// from a half-closed socket.
pub fn is_unreachable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// Opens a pool whose connections resolve unqualified names in `schema` first.
///
/// The pool connects lazily, so a service starts (and reports NOT_SERVING) while the database
/// is down, and recovers by itself when it returns.
pub fn connect_lazy(config: &DatabaseConfig, schema: &str) -> Result<PgPool, sqlx::Error> {
    let options = connect_options(config, schema)?;
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .min_connections(config.min_connections)
        .acquire_timeout(config.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IDLE_AFTER {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options))
}

fn connect_options(config: &DatabaseConfig, schema: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let statement_timeout = format!("{}ms", config.statement_timeout.as_millis());
    let mut options: PgConnectOptions = config.url.parse()?;
    options = options
        .options([
            ("statement_timeout", statement_timeout.as_str()),
            ("search_path", schema),
        ])
        .log_statements(tracing::log::LevelFilter::Trace);
    Ok(options)
}

/// Connections a busy worker keeps between transactions instead of handing each back to the
/// pool, for at most `linger` unused.
///
/// The pool pings every connection it takes back (sqlx does, to flush what a cancelled call
/// may have left), so a worker that takes one per transaction pays an extra round trip each
/// time. Held here, the next transaction starts at once on a connection that was in use
/// moments ago. Give back only connections whose last use succeeded ([`Self::keep`]); a
/// [`HeldConnection`] dropped instead is closed, not returned to the pool (see there).
#[derive(Debug)]
pub struct HeldConnections {
    pool: PgPool,
    linger: Duration,
    idle: std::sync::Mutex<Vec<(PoolConnection<Postgres>, Instant)>>,
}

impl HeldConnections {
    pub fn new(pool: PgPool, linger: Duration) -> Self {
        Self {
            pool,
            linger,
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The most recently used held connection, or one from the pool.
    pub async fn acquire(&self) -> Result<HeldConnection, sqlx::Error> {
        let held = self.lock().pop();
        let conn = match held {
            Some((conn, _)) => conn,
            None => self.pool.acquire().await?,
        };
        Ok(HeldConnection(Some(conn)))
    }

    /// Keeps a connection whose last use succeeded for the next [`Self::acquire`].
    pub fn keep(&self, mut conn: HeldConnection) {
        if let Some(conn) = conn.0.take() {
            self.lock().push((conn, Instant::now()));
        }
    }

    /// Hands connections unused for `linger` back to the pool; call it periodically.
    pub fn trim(&self) {
        let stale: Vec<_> = {
            let mut idle = self.lock();
            let now = Instant::now();
            // Most recently kept last: the stale ones are a prefix.
            let fresh_from = idle
                .iter()
                .position(|(_, kept)| now.duration_since(*kept) < self.linger)
                .unwrap_or(idle.len());
            idle.drain(..fresh_from).collect()
        };
        // Dropped outside the lock: each goes back to the pool.
        drop(stale);
    }

    /// Connections held right now.
    pub fn held(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(PoolConnection<Postgres>, Instant)>> {
        // The list stays consistent whatever panicked while holding the lock.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A connection taken from [`HeldConnections`]; it derefs to the `PgConnection`.
///
/// Give it back with [`HeldConnections::keep`] once its last use succeeded. Dropped instead (an
/// error, or a future cancelled mid-call), it is closed rather than returned to the pool: a
/// call cut short may leave the session inside a transaction sqlx does not know about (a
/// custom `BEGIN` that did more than begin, a `SET LOCAL` with it), which the pool's ping
/// would not end and the next borrower's `BEGIN` would join.
#[derive(Debug)]
pub struct HeldConnection(Option<PoolConnection<Postgres>>);

impl std::ops::Deref for HeldConnection {
    type Target = sqlx::PgConnection;

    fn deref(&self) -> &Self::Target {
        self.0
            .as_deref()
            .expect("only `keep` takes the connection, and it takes the guard")
    }
}

impl std::ops::DerefMut for HeldConnection {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0
            .as_deref_mut()
            .expect("only `keep` takes the connection, and it takes the guard")
    }
}

impl Drop for HeldConnection {
    fn drop(&mut self) {
        if let Some(conn) = &mut self.0 {
            conn.close_on_drop();
        }
    }
}

/// A service's schema and the migrations that build it.
#[derive(Debug)]
pub struct SchemaMigrations {
    /// Service name, for messages (`trading`).
    pub service: &'static str,
    /// PostgreSQL schema the service owns (`trading`).
    pub schema: &'static str,
    /// Usually `sqlx::migrate!("./migrations")` of the service crate.
    pub migrator: Migrator,
    /// The bookkeeping table, `<schema>._sqlx_migrations` or `<schema>._<component>_migrations`.
    table: String,
}

impl SchemaMigrations {
    /// The service's own migrations.
    pub fn new(service: &'static str, schema: &'static str, migrator: Migrator) -> Self {
        Self::with_table(
            service,
            schema,
            format!("{schema}._sqlx_migrations"),
            migrator,
        )
    }

    /// Migrations of a platform component (the outbox, the inbox) applied into a service's
    /// schema, with their own bookkeeping table so their versions never clash with the
    /// service's.
    pub fn component(
        service: &'static str,
        schema: &'static str,
        component: &str,
        migrator: Migrator,
    ) -> Self {
        Self::with_table(
            service,
            schema,
            format!("{schema}._{component}_migrations"),
            migrator,
        )
    }

    fn with_table(
        service: &'static str,
        schema: &'static str,
        table: String,
        mut migrator: Migrator,
    ) -> Self {
        migrator.dangerous_set_table_name(table.clone());
        migrator.create_schema(schema);
        Self {
            service,
            schema,
            migrator,
            table,
        }
    }

    fn table(&self) -> &str {
        &self.table
    }

    /// The migrations that must be applied, in version order.
    fn expected(&self) -> impl Iterator<Item = &sqlx::migrate::Migration> {
        self.migrator
            .iter()
            .filter(|migration| migration.migration_type.is_up_migration())
    }
}

/// What [`migrate`] did for one schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub service: &'static str,
    pub schema: &'static str,
    /// Versions applied by this run.
    pub applied: Vec<i64>,
    /// Migrations known in total.
    pub total: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("failed to reach the database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("failed to migrate schema `{schema}` of {service}: {source}")]
    Migrate {
        service: &'static str,
        schema: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error(
        "schema `{schema}` of {service} is behind: {} not applied; run `{MIGRATE_COMMAND}` before starting the service",
        describe_missing(.missing)
    )]
    Behind {
        service: &'static str,
        schema: &'static str,
        missing: Vec<(i64, String)>,
    },
    #[error(
        "schema `{schema}` of {service} has migration {version} applied with a different checksum: \
         the migration file changed after it ran; restore it and add a new migration instead"
    )]
    Modified {
        service: &'static str,
        schema: &'static str,
        version: i64,
    },
    #[error(
        "schema `{schema}` of {service} has migration {version} partially applied (it failed); \
         fix it by hand, then run `{MIGRATE_COMMAND}`"
    )]
    Dirty {
        service: &'static str,
        schema: &'static str,
        version: i64,
    },
}

fn describe_missing(missing: &[(i64, String)]) -> String {
    missing
        .iter()
        .map(|(version, description)| format!("migration {version} ({description})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Applies every pending migration of `schema`, holding sqlx's advisory lock so concurrent
/// runs (two Jobs) serialise.
pub async fn migrate(
    config: &DatabaseConfig,
    schema: &SchemaMigrations,
) -> Result<MigrationReport, SchemaError> {
    // Unqualified names in the migration files land in the service's schema.
    let mut conn = connect_options(config, schema.schema)?.connect().await?;
    let before = applied_versions(&mut conn, schema).await?;
    schema
        .migrator
        .run(&mut conn)
        .await
        .map_err(|source| SchemaError::Migrate {
            service: schema.service,
            schema: schema.schema,
            source,
        })?;
    let after = applied_versions(&mut conn, schema).await?;
    conn.close().await?;
    Ok(MigrationReport {
        service: schema.service,
        schema: schema.schema,
        applied: after
            .into_iter()
            .map(|(version, _, _)| version)
            .filter(|version| !before.iter().any(|(old, _, _)| old == version))
            .collect(),
        total: schema.expected().count(),
    })
}

/// Fails unless every migration the binary knows is applied, unmodified and complete.
///
/// Migrations applied in the database but unknown to this binary are accepted: that is a newer
/// release's schema during a rolling deploy, which must stay compatible with the old code.
pub async fn ensure_current(pool: &PgPool, schema: &SchemaMigrations) -> Result<(), SchemaError> {
    let mut conn = pool.acquire().await?;
    let applied = applied_versions(&mut conn, schema).await?;

    if let Some((version, _, _)) = applied.iter().find(|(_, _, success)| !success) {
        return Err(SchemaError::Dirty {
            service: schema.service,
            schema: schema.schema,
            version: *version,
        });
    }
    let mut missing = Vec::new();
    for migration in schema.expected() {
        match applied
            .iter()
            .find(|(version, _, _)| *version == migration.version)
        {
            None => missing.push((migration.version, migration.description.to_string())),
            Some((_, checksum, _)) if checksum.as_slice() != &*migration.checksum => {
                return Err(SchemaError::Modified {
                    service: schema.service,
                    schema: schema.schema,
                    version: migration.version,
                });
            }
            Some(_) => {}
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(SchemaError::Behind {
            service: schema.service,
            schema: schema.schema,
            missing,
        })
    }
}

/// `(version, checksum, success)` of every applied migration; empty when the schema or its
/// bookkeeping table does not exist yet.
async fn applied_versions(
    conn: &mut sqlx::PgConnection,
    schema: &SchemaMigrations,
) -> Result<Vec<(i64, Vec<u8>, bool)>, sqlx::Error> {
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(schema.table())
        .fetch_one(&mut *conn)
        .await?;
    if exists.is_none() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT version, checksum, success FROM {} ORDER BY version",
        schema.table()
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
}
