//! The auth service as one unit: what `auth-service` and `wharf dev` both run.

use std::sync::Arc;

use async_nats::jetstream;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;
use wharf_events::consumer::ConsumerError;
use wharf_events::{AckedPublisher, Consumer, ConsumerConfig, Namespace, Topology};
use wharf_outbox::{Relay, RelayConfig, Waker};
use wharf_proto::wharf::auth::v1::auth_service_server::AuthServiceServer;
use wharf_proto::wharf::social::v1::{ProfileCreated, ProfileCreationFailed};
use wharf_resilience::RateLimiter;
use wharf_runtime::config::RedisConfig;
use wharf_runtime::db::{self, DatabaseConfig, SchemaError, SchemaMigrations};
use wharf_tokens::{KeyConfigError, TokensConfig};

use crate::config::{AuthConfig, AuthConfigError};
use crate::password::{HashPlacement, PasswordError, Passwords};
use crate::saga::{self, OnProfileCreated, OnProfileCreationFailed};
use crate::service::{AuthHandlers, LoginStep, Parts};
use crate::sessions::Sessions;

/// The PostgreSQL schema auth owns.
pub const SCHEMA: &str = "auth";

/// Auth's migrations: its tables, plus the outbox (it produces `auth.user.registered`) and the
/// inbox (it consumes the saga replies).
pub fn schemas() -> Vec<SchemaMigrations> {
    static MIGRATOR: Migrator = sqlx::migrate!("./migrations");
    vec![
        SchemaMigrations::new(
            "auth",
            SCHEMA,
            Migrator::with_migrations(MIGRATOR.iter().cloned().collect()),
        ),
        wharf_outbox::migrations("auth", SCHEMA),
        wharf_events::migrations("auth", SCHEMA),
    ]
}

/// What the platform gives the service.
#[derive(Debug, Clone)]
pub struct Deps {
    pub database: DatabaseConfig,
    pub nats: async_nats::Client,
    pub redis: RedisConfig,
    pub namespace: Namespace,
    pub relay: RelayConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] AuthConfigError),
    #[error(transparent)]
    Keys(#[from] KeyConfigError),
    #[error(
        "no active signing key in [tokens.keys]: auth issues tokens, so one key must have state = \"active\""
    )]
    NoSigningKey,
    #[error("cannot reach PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("the JetStream topology is not usable: {0}")]
    Topology(#[from] wharf_events::topology::TopologyError),
    #[error("invalid Redis settings: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("password hashing is not usable: {0}")]
    Passwords(#[from] PasswordError),
    #[error("a saga consumer stopped: {0}")]
    Consumer(#[from] ConsumerError),
}

/// The built service: handlers ready to serve, and the background work (relay, consumers).
#[derive(Debug)]
pub struct App {
    handlers: AuthHandlers,
    pool: PgPool,
    js: jetstream::Context,
    topology: Topology,
    relay: Option<Relay>,
    saga: crate::reconcile::SagaDeadlines,
}

impl App {
    /// Checks the configuration, the keys and the schema, applies the JetStream topology, and
    /// connects to Redis lazily (auth starts while Redis is down and answers `UNAVAILABLE`
    /// for what needs it until it is back).
    pub async fn build(
        deps: Deps,
        config: AuthConfig,
        tokens: &TokensConfig,
    ) -> Result<Self, AppError> {
        config.validate()?;
        let tokens = tokens.tokens()?;
        if tokens.issue("start-up", "start-up", &[]).is_err() {
            return Err(AppError::NoSigningKey);
        }
        let pool = db::connect_lazy(&deps.database, SCHEMA)?;
        for schema in schemas() {
            db::ensure_current(&pool, &schema).await?;
        }
        let js = jetstream::new(deps.nats.clone());
        let topology = Topology::declared(deps.namespace.clone());
        topology.apply(&js).await?;

        let redis = deps.redis.connect_lazy()?;
        let prefix = wharf_tokens::session::store_prefix(&deps.redis.key_prefix);
        let workers = if config.password_workers == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            config.password_workers
        };
        let relay = config.relay.then(|| {
            Relay::new(
                pool.clone(),
                deps.nats.clone(),
                deps.namespace.clone(),
                SCHEMA,
                deps.relay.clone(),
            )
        });
        let saga = config.saga;
        let outbox = relay
            .as_ref()
            .map_or_else(|| Waker::notifying(pool.clone()), Relay::waker);
        let handlers = AuthHandlers::new(Parts {
            pool: pool.clone(),
            tokens: Arc::new(tokens),
            sessions: Sessions::new(redis.clone(), prefix.clone()),
            limiter: RateLimiter::new(redis, prefix),
            passwords: Passwords::with_placement(
                workers,
                config.password_queue,
                &HashPlacement {
                    priority: config.password_priority,
                    cgroup: config.password_cgroup.clone(),
                },
            )?,
            publisher: AckedPublisher::new(js.clone(), deps.namespace.clone()),
            outbox,
            config,
        });
        Ok(Self {
            handlers,
            pool,
            js,
            topology,
            relay,
            saga,
        })
    }

    /// Runs `hook` after each login step (fault tests crash logins there).
    #[doc(hidden)]
    pub fn set_login_step_hook(&mut self, hook: Arc<dyn Fn(LoginStep) + Send + Sync>) {
        self.handlers.set_login_step_hook(hook);
    }

    pub fn handlers(&self) -> &AuthHandlers {
        &self.handlers
    }

    /// The gRPC service to register on a server.
    pub fn server(&self) -> AuthServiceServer<AuthHandlers> {
        self.handlers.clone().server()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs the relay and the saga consumers until `shutdown`; in-flight work finishes first.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let created = Consumer::<ProfileCreated, _>::new(
            self.js.clone(),
            self.pool.clone(),
            &self.topology,
            ConsumerConfig {
                concurrency: 8,
                ..ConsumerConfig::new(saga::PROFILE_CREATED)
            },
            OnProfileCreated,
        );
        let failed = Consumer::<ProfileCreationFailed, _>::new(
            self.js.clone(),
            self.pool.clone(),
            &self.topology,
            ConsumerConfig {
                concurrency: 8,
                ..ConsumerConfig::new(saga::PROFILE_FAILED)
            },
            OnProfileCreationFailed,
        );
        let relay = async {
            if let Some(relay) = self.relay {
                relay.run(shutdown.clone()).await;
            }
        };
        let reconcile = periodic_reconcile(self.pool.clone(), self.saga, shutdown.clone());
        // Boxed: the consumers' and the relay's futures are large, and this one is spawned.
        // A consumer that cannot run (its live config contradicts the declared one) ends the
        // whole service at once instead of surfacing only at shutdown.
        tokio::try_join!(
            Box::pin(async { Ok::<(), AppError>(created.run(shutdown.clone()).await?) }),
            Box::pin(async { Ok::<(), AppError>(failed.run(shutdown.clone()).await?) }),
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

async fn periodic_reconcile(
    pool: PgPool,
    deadlines: crate::reconcile::SagaDeadlines,
    shutdown: CancellationToken,
) {
    if deadlines.interval.is_zero() {
        return;
    }
    let mut ticker = tokio::time::interval(deadlines.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(err) = crate::reconcile::run(&pool, deadlines).await {
            tracing::warn!(error = %err, "registration reconciliation failed; retrying next interval");
        }
    }
}
