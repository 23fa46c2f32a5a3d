//! The revenue service as one unit: what `revenue-service` and `wharf dev` both run.

use std::sync::Arc;

use async_nats::jetstream;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;
use wharf_events::consumer::{ConsumerError, ConsumerStats};
use wharf_events::{Consumer, ConsumerConfig, Namespace, Topology};
use wharf_outbox::{Relay, RelayConfig, Waker};
use wharf_proto::wharf::revenue::v1::revenue_service_server::RevenueServiceServer;
use wharf_proto::wharf::trading::v1::TradeExecuted;
use wharf_runtime::db::{self, DatabaseConfig, SchemaError, SchemaMigrations};
use wharf_tokens::{KeyConfigError, TokensConfig};

use crate::config::{RevenueConfig, RevenueConfigError};
use crate::consumer::{LEDGER_CONSUMER, RecordFee};
use crate::service::RevenueHandlers;

/// The PostgreSQL schema revenue owns.
pub const SCHEMA: &str = "revenue";

/// Revenue's migrations: the ledger, plus the outbox (it produces `revenue.fee.recorded`) and
/// the inbox (it consumes `trading.trade.executed`).
pub fn schemas() -> Vec<SchemaMigrations> {
    static MIGRATOR: Migrator = sqlx::migrate!("./migrations");
    vec![
        SchemaMigrations::new(
            "revenue",
            SCHEMA,
            Migrator::with_migrations(MIGRATOR.iter().cloned().collect()),
        ),
        wharf_outbox::migrations("revenue", SCHEMA),
        wharf_events::migrations("revenue", SCHEMA),
    ]
}

/// What the platform gives the service. Revenue keeps nothing in Redis.
#[derive(Debug, Clone)]
pub struct Deps {
    /// The cluster holding the `revenue` schema (migrated beforehand by `wharf migrate`).
    pub database: DatabaseConfig,
    pub nats: async_nats::Client,
    /// Prefix of every stream, subject and durable consumer name (empty in production).
    pub namespace: Namespace,
    /// Settings of the relay run for the `revenue` schema when `revenue.relay` is on.
    pub relay: RelayConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] RevenueConfigError),
    #[error(transparent)]
    Keys(#[from] KeyConfigError),
    #[error("cannot reach PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("the JetStream topology is not usable: {0}")]
    Topology(#[from] wharf_events::topology::TopologyError),
    #[error("the ledger consumer stopped: {0}")]
    Consumer(#[from] ConsumerError),
}

/// The built service: handlers ready to serve, and the background work (relay, consumer).
#[derive(Debug)]
pub struct App {
    handlers: RevenueHandlers,
    pool: PgPool,
    relay: Option<Relay>,
    ledger: Consumer<TradeExecuted, RecordFee>,
}

impl App {
    /// Checks the configuration, the token keys (public keys suffice: revenue only verifies)
    /// and the schema, and applies the JetStream topology. Nothing is consumed or relayed
    /// until [`App::run_until_stopped`].
    pub async fn build(
        deps: Deps,
        config: RevenueConfig,
        tokens: &TokensConfig,
    ) -> Result<Self, AppError> {
        config.validate()?;
        let tokens = tokens.tokens()?;
        let pool = db::connect_lazy(&deps.database, SCHEMA)?;
        for schema in schemas() {
            db::ensure_current(&pool, &schema).await?;
        }
        let js = jetstream::new(deps.nats.clone());
        let topology = Topology::declared(deps.namespace.clone());
        topology.apply(&js).await?;

        let relay = config.relay.then(|| {
            Relay::new(
                pool.clone(),
                deps.nats.clone(),
                deps.namespace.clone(),
                SCHEMA,
                deps.relay.clone(),
            )
        });
        let outbox = relay
            .as_ref()
            .map_or_else(|| Waker::notifying(pool.clone()), Relay::waker);
        let ledger = Consumer::new(
            js,
            pool.clone(),
            &topology,
            ConsumerConfig {
                concurrency: config.consumer_concurrency,
                max_deliver: config.consumer_max_deliver,
                ack_wait: config.consumer_ack_wait,
                ..ConsumerConfig::new(LEDGER_CONSUMER)
            },
            RecordFee::new(config.currency.clone()),
        )
        // The handler enqueued `revenue.fee.recorded`: the relay publishes it at once.
        .after_commit(move |_| {
            outbox.wake();
            std::future::ready(())
        });
        let handlers = RevenueHandlers::new(pool.clone(), Arc::new(tokens), config.currency);
        Ok(Self {
            handlers,
            pool,
            relay,
            ledger,
        })
    }

    pub fn handlers(&self) -> &RevenueHandlers {
        &self.handlers
    }

    /// The gRPC service to register on a server.
    pub fn server(&self) -> RevenueServiceServer<RevenueHandlers> {
        self.handlers.clone().server()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The ledger consumer's counters (applied, duplicates, dead letters, …).
    pub fn ledger_stats(&self) -> Arc<ConsumerStats> {
        self.ledger.stats()
    }

    /// Runs the relay and the ledger consumer until `shutdown`; in-flight work finishes first.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let relay = async {
            if let Some(relay) = self.relay {
                relay.run(shutdown.clone()).await;
            }
        };
        // Boxed: the consumer's and the relay's futures are large, and this one is spawned.
        // A consumer that cannot run (its live config contradicts the declared one) ends the
        // whole service at once instead of surfacing only at shutdown.
        tokio::try_join!(
            Box::pin(async { Ok::<(), AppError>(self.ledger.run(shutdown.clone()).await?) }),
            Box::pin(async {
                relay.await;
                Ok(())
            })
        )?;
        Ok(())
    }
}
