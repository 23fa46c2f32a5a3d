//! The trading service as one unit: what `trading-service` and `wharf dev` both run.

use std::sync::Arc;

use async_nats::jetstream;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;
use wharf_events::consumer::ConsumerError;
use wharf_events::{Consumer, ConsumerConfig, Namespace, Topology};
use wharf_outbox::{Relay, RelayConfig, Waker};
use wharf_proto::wharf::revenue::v1::FeeRecorded;
use wharf_proto::wharf::trading::v1::trading_service_server::TradingServiceServer;
use wharf_runtime::db::{self, DatabaseConfig, SchemaError, SchemaMigrations};
use wharf_tokens::{KeyConfigError, TokensConfig};

use crate::config::{TradingConfig, TradingConfigError};
use crate::service::TradingHandlers;
use crate::settle::{self, Settle};

/// The PostgreSQL schema trading owns.
pub const SCHEMA: &str = "trading";

/// Trading's migrations: its tables, the outbox (`trading.trade.executed`) and the inbox
/// (`revenue.fee.recorded`).
pub fn schemas() -> Vec<SchemaMigrations> {
    static MIGRATOR: Migrator = sqlx::migrate!("./migrations");
    vec![
        SchemaMigrations::new(
            "trading",
            SCHEMA,
            Migrator::with_migrations(MIGRATOR.iter().cloned().collect()),
        ),
        wharf_outbox::migrations("trading", SCHEMA),
        wharf_events::migrations("trading", SCHEMA),
    ]
}

/// What the platform gives the service.
#[derive(Debug, Clone)]
pub struct Deps {
    pub database: DatabaseConfig,
    pub nats: async_nats::Client,
    pub namespace: Namespace,
    pub relay: RelayConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] TradingConfigError),
    #[error(transparent)]
    Keys(#[from] KeyConfigError),
    #[error("cannot reach PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("the JetStream topology is not usable: {0}")]
    Topology(#[from] wharf_events::topology::TopologyError),
    #[error("the settlement consumer stopped: {0}")]
    Consumer(#[from] ConsumerError),
}

#[derive(Debug)]
pub struct App {
    handlers: TradingHandlers,
    pool: PgPool,
    js: jetstream::Context,
    topology: Topology,
    relay: Option<Relay>,
    config: TradingConfig,
}

impl App {
    /// Checks the configuration, the keys (verification only) and the schema, and applies the
    /// JetStream topology.
    pub async fn build(
        deps: Deps,
        config: TradingConfig,
        tokens: &TokensConfig,
    ) -> Result<Self, AppError> {
        config.validate()?;
        let tokens = Arc::new(tokens.tokens()?);
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
        Ok(Self {
            handlers: TradingHandlers::new(pool.clone(), tokens, outbox, config.clone()),
            pool,
            js,
            topology,
            relay,
            config,
        })
    }

    /// The handlers, for callers that skip gRPC (the benchmark's direct transaction).
    pub fn handlers(&self) -> &TradingHandlers {
        &self.handlers
    }

    pub fn server(&self) -> TradingServiceServer<TradingHandlers> {
        self.handlers.clone().server()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs the relay, the settlement consumer and periodic reconciliation until `shutdown`.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let settle = Consumer::<FeeRecorded, _>::new(
            self.js.clone(),
            self.pool.clone(),
            &self.topology,
            ConsumerConfig {
                concurrency: self.config.settle_concurrency.max(1),
                ..ConsumerConfig::new(settle::CONSUMER)
            },
            Settle,
        );
        let relay = async {
            if let Some(relay) = self.relay {
                relay.run(shutdown.clone()).await;
            }
        };
        let reconcile =
            periodic_reconcile(self.pool.clone(), self.config.clone(), shutdown.clone());
        // A consumer that cannot run (its live config contradicts the declared one) ends the
        // whole service at once instead of surfacing only at shutdown.
        tokio::try_join!(
            Box::pin(async { Ok::<(), AppError>(settle.run(shutdown.clone()).await?) }),
            Box::pin(async {
                relay.await;
                Ok(())
            }),
            Box::pin(async {
                reconcile.await;
                Ok(())
            })
        )?;
        Ok(())
    }
}

async fn periodic_reconcile(pool: PgPool, config: TradingConfig, shutdown: CancellationToken) {
    let interval = config.reconcile.interval;
    if interval.is_zero() {
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(err) = crate::reconcile::run(&pool, config.reconcile.settle_after).await {
            tracing::warn!(error = %err, "periodic reconciliation failed; next run in {interval:?}");
        }
    }
}
