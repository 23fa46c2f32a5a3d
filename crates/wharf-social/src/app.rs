//! The social service as one unit: what `social-service` and `wharf dev` both run.

use std::sync::Arc;

use async_nats::jetstream;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;
use wharf_events::consumer::{ConsumerError, ConsumerStats};
use wharf_events::publish::FireAndForgetStats;
use wharf_events::{Consumer, ConsumerConfig, FireAndForgetPublisher, Namespace, Topology};
use wharf_outbox::{Relay, RelayConfig, Waker};
use wharf_proto::wharf::auth::v1::UserRegistered;
use wharf_proto::wharf::social::v1::social_service_server::SocialServiceServer;
use wharf_proto::wharf::trading::v1::TradeExecuted;
use wharf_runtime::db::{self, DatabaseConfig, SchemaError, SchemaMigrations};
use wharf_tokens::{KeyConfigError, TokensConfig};

use crate::achievements::{ACHIEVEMENTS_CONSUMER, Gamify};
use crate::config::{SocialConfig, SocialConfigError};
use crate::feed::{FEED_CONSUMER, FanOut};
use crate::notify::{Notifier, NotifierStats};
use crate::registration::{CreateProfile, REGISTRATION_CONSUMER};
use crate::service::SocialHandlers;

/// The PostgreSQL schema social owns.
pub const SCHEMA: &str = "social";

/// Social's migrations: profiles, follows, feeds and achievements, plus the outbox (it
/// produces the registration replies) and the inbox (it consumes registrations and trades).
pub fn schemas() -> Vec<SchemaMigrations> {
    static MIGRATOR: Migrator = sqlx::migrate!("./migrations");
    vec![
        SchemaMigrations::new(
            "social",
            SCHEMA,
            Migrator::with_migrations(MIGRATOR.iter().cloned().collect()),
        ),
        wharf_outbox::migrations("social", SCHEMA),
        wharf_events::migrations("social", SCHEMA),
    ]
}

/// What the platform gives the service. Social keeps nothing in Redis.
#[derive(Debug, Clone)]
pub struct Deps {
    /// The cluster holding the `social` schema (migrated beforehand by `wharf migrate`).
    pub database: DatabaseConfig,
    /// For JetStream (the consumers) and core NATS (achievement events, notifications).
    pub nats: async_nats::Client,
    /// Prefix of every stream, subject and durable consumer name (empty in production).
    pub namespace: Namespace,
    /// Settings of the relay run for the `social` schema when `social.relay` is on.
    pub relay: RelayConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] SocialConfigError),
    #[error(transparent)]
    Keys(#[from] KeyConfigError),
    #[error("cannot reach PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("the JetStream topology is not usable: {0}")]
    Topology(#[from] wharf_events::topology::TopologyError),
    #[error("a social consumer stopped: {0}")]
    Consumer(#[from] ConsumerError),
}

/// The built service: handlers ready to serve, and the background work (relay, the
/// registration, feed and achievement consumers).
#[derive(Debug)]
pub struct App {
    handlers: SocialHandlers,
    pool: PgPool,
    relay: Option<Relay>,
    registration: Consumer<UserRegistered, CreateProfile>,
    feed: Consumer<TradeExecuted, FanOut>,
    achievements: Consumer<TradeExecuted, Gamify>,
    events: FireAndForgetPublisher,
    notifier: Notifier,
}

impl App {
    /// Checks the configuration, the token keys (public keys suffice: social only verifies)
    /// and the schema, applies the JetStream topology and starts the fire-and-forget senders.
    /// Nothing is consumed or relayed until [`App::run_until_stopped`].
    pub async fn build(
        deps: Deps,
        config: SocialConfig,
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
        let consumer_config = |name: &str| ConsumerConfig {
            concurrency: config.consumer_concurrency,
            max_deliver: config.consumer_max_deliver,
            ack_wait: config.consumer_ack_wait,
            ..ConsumerConfig::new(name)
        };
        let outbox = relay
            .as_ref()
            .map_or_else(|| Waker::notifying(pool.clone()), Relay::waker);
        let registration = Consumer::new(
            js.clone(),
            pool.clone(),
            &topology,
            consumer_config(REGISTRATION_CONSUMER),
            CreateProfile,
        )
        // The handler enqueued the saga's reply: the relay publishes it at once.
        .after_commit(move |_| {
            outbox.wake();
            std::future::ready(())
        });
        let feed = Consumer::new(
            js.clone(),
            pool.clone(),
            &topology,
            consumer_config(FEED_CONSUMER),
            FanOut,
        );
        let events = FireAndForgetPublisher::start(
            deps.nats.clone(),
            deps.namespace.clone(),
            config.fire_and_forget_queue,
        );
        let notifier = Notifier::start(
            deps.nats.clone(),
            deps.namespace.clone(),
            config.fire_and_forget_queue,
        );
        let gamify = Gamify::new();
        let announcer = gamify.announcer(events.clone(), notifier.clone());
        // Announcements leave only once the unlock has committed.
        let achievements = Consumer::new(
            js,
            pool.clone(),
            &topology,
            consumer_config(ACHIEVEMENTS_CONSUMER),
            gamify,
        )
        .after_commit(move |ctx| {
            announcer.announce(ctx);
            std::future::ready(())
        });
        let handlers = SocialHandlers::new(pool.clone(), Arc::new(tokens));
        Ok(Self {
            handlers,
            pool,
            relay,
            registration,
            feed,
            achievements,
            events,
            notifier,
        })
    }

    pub fn handlers(&self) -> &SocialHandlers {
        &self.handlers
    }

    /// The gRPC service to register on a server.
    pub fn server(&self) -> SocialServiceServer<SocialHandlers> {
        self.handlers.clone().server()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The registration consumer's counters.
    pub fn registration_stats(&self) -> Arc<ConsumerStats> {
        self.registration.stats()
    }

    /// The feed consumer's counters.
    pub fn feed_stats(&self) -> Arc<ConsumerStats> {
        self.feed.stats()
    }

    /// The achievement consumer's counters.
    pub fn achievement_stats(&self) -> Arc<ConsumerStats> {
        self.achievements.stats()
    }

    /// `social.achievement.unlocked` emitted and dropped.
    pub fn event_stats(&self) -> &FireAndForgetStats {
        self.events.stats()
    }

    /// Notifications queued and dropped.
    pub fn notification_stats(&self) -> &NotifierStats {
        self.notifier.stats()
    }

    /// Runs the relay and the three consumers until `shutdown`; in-flight work finishes first.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let relay = async {
            if let Some(relay) = self.relay {
                relay.run(shutdown.clone()).await;
            }
            Ok::<(), AppError>(())
        };
        // Boxed: the consumers' and the relay's futures are large. A consumer that cannot run
        // (its live config contradicts the declared one) ends the whole service at once
        // instead of surfacing only at shutdown.
        tokio::try_join!(
            Box::pin(async { Ok::<(), AppError>(self.registration.run(shutdown.clone()).await?) }),
            Box::pin(async { Ok::<(), AppError>(self.feed.run(shutdown.clone()).await?) }),
            Box::pin(async { Ok::<(), AppError>(self.achievements.run(shutdown.clone()).await?) }),
            Box::pin(relay),
        )?;
        Ok(())
    }
}
