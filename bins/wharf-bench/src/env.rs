//! The bench's own world: a fresh database (`wharf_bench_<tag>`, the outbox, the inbox and a
//! ledger in schema `bench`), a NATS connection, and one JetStream namespace per scenario so
//! that no scenario's consumer ever sees another's messages. [`BenchEnv::cleanup`] drops it all.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use sqlx::{Connection, PgConnection, PgPool};
use wharf_events::{Namespace, Topology};
use wharf_runtime::db::{self, DatabaseConfig};

use crate::workload;

/// Schema the outbox, inbox and ledger live in.
pub const SCHEMA: &str = "bench";

#[derive(Debug)]
pub struct BenchEnv {
    tag: String,
    admin_url: String,
    database: String,
    config: DatabaseConfig,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    topologies: Mutex<Vec<Topology>>,
}

impl BenchEnv {
    /// Creates the database and runs the migrations; connects to NATS.
    pub async fn create(admin_url: &str, nats_url: &str) -> anyhow::Result<Self> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let tag = format!("wb{}", &id[id.len() - 12..]);
        let database = format!("wharf_bench_{}", &tag[2..]);

        let mut admin = PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("failed to connect to PostgreSQL at {admin_url} (is the stack up? `bash deploy/local/stack.sh up`)"))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("failed to create database {database}"))?;
        admin.close().await.ok();

        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url, |(base, _)| base);
        let config = DatabaseConfig {
            url: format!("{base}/{database}"),
            statement_timeout: Duration::from_secs(120),
            ..DatabaseConfig::default()
        };
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(nats_url)
            .await
            .with_context(|| format!("failed to connect to NATS at {nats_url}"))?;
        let env = Self {
            tag,
            admin_url: admin_url.to_owned(),
            database,
            config,
            js: jetstream::new(client.clone()),
            client,
            topologies: Mutex::new(Vec::new()),
        };
        if let Err(err) = env.migrate().await {
            env.cleanup().await;
            return Err(err);
        }
        Ok(env)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        db::migrate(&self.config, &wharf_outbox::migrations("bench", SCHEMA))
            .await
            .context("failed to migrate the outbox")?;
        db::migrate(&self.config, &wharf_events::migrations("bench", SCHEMA))
            .await
            .context("failed to migrate the inbox")?;
        let pool = self.pool(1)?;
        sqlx::query(workload::LEDGER_DDL)
            .execute(&pool)
            .await
            .context("failed to create the ledger table")?;
        pool.close().await;
        Ok(())
    }

    /// The run's database, for services that build their own pools (auth).
    pub fn database_config(&self) -> DatabaseConfig {
        self.config.clone()
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    pub fn database_name(&self) -> &str {
        &self.database
    }

    /// A pool of its own per role (producer, relay, consumer), as separate services would have.
    pub fn pool(&self, max_connections: u32) -> anyhow::Result<PgPool> {
        let config = DatabaseConfig {
            max_connections,
            acquire_timeout: Duration::from_secs(30),
            ..self.config.clone()
        };
        db::connect_lazy(&config, SCHEMA).context("invalid database URL")
    }

    /// Declares and applies the streams of a fresh namespace for `scenario`.
    pub async fn topology(&self, scenario: &str) -> anyhow::Result<Topology> {
        let topology = Topology::declared(Namespace::new(&format!("{}-{scenario}", self.tag)));
        self.topologies
            .lock()
            .expect("topologies lock")
            .push(topology.clone());
        topology
            .apply(&self.js)
            .await
            .with_context(|| format!("failed to create the streams of scenario {scenario}"))?;
        Ok(topology)
    }

    /// Empties the inbox and the ledger, so each apply scenario starts from the same tables.
    pub async fn reset_apply_tables(&self, pool: &PgPool) -> anyhow::Result<()> {
        sqlx::query("TRUNCATE inbox, ledger")
            .execute(pool)
            .await
            .context("failed to truncate the inbox and ledger")?;
        Ok(())
    }

    /// A connection to the admin database (server settings, version).
    pub async fn admin(&self) -> anyhow::Result<PgConnection> {
        PgConnection::connect(&self.admin_url)
            .await
            .context("failed to connect to the admin database")
    }

    /// Deletes every stream the run created and drops the database. Best effort: it reports
    /// what it could not remove, and the names are unique, so a leftover harms nothing.
    pub async fn cleanup(&self) {
        let topologies = std::mem::take(&mut *self.topologies.lock().expect("topologies lock"));
        for stream in topologies.iter().flat_map(|topology| &topology.streams) {
            let deleted =
                tokio::time::timeout(Duration::from_secs(10), self.js.delete_stream(&stream.name))
                    .await;
            if !matches!(deleted, Ok(Ok(_))) {
                eprintln!("wharf-bench: could not delete stream {}", stream.name);
            }
        }
        let dropped = async {
            let mut admin = self.admin().await?;
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database);
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(30), dropped).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("wharf-bench: could not drop {}: {err:#}", self.database),
            Err(_) => eprintln!("wharf-bench: timed out dropping {}", self.database),
        }
    }
}
