//! A harness per test: a fresh database with the outbox and inbox in schema `svc`, a namespace
//! of its own on NATS (the stack's, or a throwaway server), relays and consumers to run.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;
use wharf_events::consumer::{ConsumerStats, Handler};
use wharf_events::{Consumer, ConsumerConfig, EventContext, HandlerError, Namespace, Topology};
use wharf_outbox::{Relay, RelayConfig, RelayStats};
use wharf_proto::wharf::trading::v1::TradeExecuted;
use wharf_runtime::db;
use wharf_testkit::FreshDatabase;

pub const SCHEMA: &str = "svc";

pub struct Harness {
    pub database: FreshDatabase,
    pub pool: PgPool,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub namespace: Namespace,
    pub topology: Topology,
    pub stop: CancellationToken,
}

impl Harness {
    /// Uses the stack's NATS (`NATS_URL`).
    pub async fn new() -> Self {
        let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".to_owned());
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(url)
            .await
            .expect("NATS must be reachable at NATS_URL (run `wharf stack up`)");
        Self::with_client(client).await
    }

    pub async fn with_client(client: async_nats::Client) -> Self {
        let database = FreshDatabase::create().await.expect("fresh database");
        db::migrate(&database.config, &wharf_outbox::migrations("svc", SCHEMA))
            .await
            .unwrap();
        db::migrate(&database.config, &wharf_events::migrations("svc", SCHEMA))
            .await
            .unwrap();
        let pool = db::connect_lazy(&database.config, SCHEMA).unwrap();
        sqlx::query(
            "CREATE TABLE applied (event_id UUID PRIMARY KEY, account_id TEXT NOT NULL, seq BIGINT NOT NULL, \
             position BIGSERIAL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let js = jetstream::new(client.clone());
        let namespace = Namespace::new(&wharf_testkit::unique_name("t"));
        let topology = Topology::declared(namespace.clone());
        topology.apply(&js).await.expect("topology");
        Self {
            database,
            pool,
            client,
            js,
            namespace,
            topology,
            stop: CancellationToken::new(),
        }
    }

    /// Commits one trade event for `account` with sequence `seq` (carried in `quantity`).
    pub async fn enqueue(&self, account: &str, seq: i64) -> String {
        let mut tx = self.pool.begin().await.unwrap();
        let id = wharf_outbox::enqueue(&mut tx, trade(account, seq))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        id
    }

    pub fn relay(&self, config: RelayConfig) -> (Arc<RelayStats>, tokio::task::JoinHandle<()>) {
        self.start(self.unstarted_relay(config))
    }

    pub fn unstarted_relay(&self, config: RelayConfig) -> Relay {
        Relay::new(
            self.pool.clone(),
            self.client.clone(),
            self.namespace.clone(),
            SCHEMA,
            config,
        )
    }

    pub fn start(&self, relay: Relay) -> (Arc<RelayStats>, tokio::task::JoinHandle<()>) {
        let stats = relay.stats();
        (stats, tokio::spawn(relay.run(self.stop.clone())))
    }

    pub fn consumer(
        &self,
        config: ConsumerConfig,
        handler: Recorder,
    ) -> Consumer<TradeExecuted, Recorder> {
        Consumer::new(
            self.js.clone(),
            self.pool.clone(),
            &self.topology,
            config,
            handler,
        )
    }

    pub async fn outbox_len(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn applied_len(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM applied")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Waits until the outbox is empty.
    pub async fn wait_outbox_empty(&self, within: Duration) {
        wharf_testkit::wait_until(within, "the outbox to drain", || async {
            self.outbox_len().await == 0
        })
        .await
        .unwrap();
    }

    pub async fn wait_applied(&self, count: i64, within: Duration) {
        wharf_testkit::wait_until(within, &format!("{count} applied events"), || async {
            self.applied_len().await >= count
        })
        .await
        .unwrap();
    }

    /// Messages stored in the TRADING stream of this namespace, in stream order.
    pub async fn stream_messages(&self) -> Vec<async_nats::jetstream::message::StreamMessage> {
        let mut stream = self
            .js
            .get_stream(self.topology.stream_name("TRADING"))
            .await
            .unwrap();
        let state = stream.info().await.unwrap().state.clone();
        let mut messages = Vec::new();
        if state.messages == 0 {
            return messages;
        }
        for seq in state.first_sequence..=state.last_sequence {
            if let Ok(message) = stream.direct_get(seq).await {
                messages.push(message);
            }
        }
        messages
    }

    pub async fn stream_len(&self) -> u64 {
        let mut stream = self
            .js
            .get_stream(self.topology.stream_name("TRADING"))
            .await
            .unwrap();
        stream.info().await.unwrap().state.messages
    }

    pub async fn finish(self) {
        self.stop.cancel();
        self.pool.close().await;
        // The namespace's streams go too, so a developer's stack does not collect them.
        for stream in &self.topology.streams {
            let _ = self.js.delete_stream(&stream.name).await;
        }
        self.database.drop_now().await;
    }
}

pub fn trade(account: &str, seq: i64) -> TradeExecuted {
    TradeExecuted {
        account_id: account.to_owned(),
        instrument: "WHRF".to_owned(),
        quantity: seq,
        fee_minor: 10,
        ..Default::default()
    }
}

/// A handler that records each event in `applied` (inside the consumer's transaction) and
/// counts its invocations. Events whose account is in `poison` fail while `poisoned` is set.
#[derive(Clone, Default)]
pub struct Recorder {
    pub calls: Arc<AtomicU64>,
    pub poisoned: Arc<std::sync::atomic::AtomicBool>,
    pub poison_account: Arc<std::sync::Mutex<Option<String>>>,
}

impl Handler<TradeExecuted> for Recorder {
    async fn handle(
        &self,
        ctx: &EventContext,
        event: TradeExecuted,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let poison = self.poison_account.lock().unwrap().clone();
        if self.poisoned.load(Ordering::SeqCst)
            && poison.as_deref() == Some(event.account_id.as_str())
        {
            return Err(HandlerError::Transient(format!(
                "account {} is poisoned",
                event.account_id
            )));
        }
        let event_id = uuid::Uuid::parse_str(&ctx.envelope.event_id).unwrap();
        sqlx::query("INSERT INTO applied (event_id, account_id, seq) VALUES ($1, $2, $3)")
            .bind(event_id)
            .bind(&event.account_id)
            .bind(event.quantity)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// `event id → count` over stream messages.
pub fn count_event_ids(
    messages: &[async_nats::jetstream::message::StreamMessage],
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for message in messages {
        let id = message
            .headers
            .get(wharf_events::envelope::EVENT_ID)
            .expect("event id header")
            .as_str()
            .to_owned();
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

pub fn consumer_stats_line(stats: &ConsumerStats) -> String {
    format!(
        "applied {} duplicates {} redeliveries {} retries {} dead {}",
        stats.applied(),
        stats.duplicates(),
        stats.redeliveries(),
        stats.retries(),
        stats.dead_lettered()
    )
}

pub fn fast_relay() -> RelayConfig {
    RelayConfig {
        poll_interval: Duration::from_millis(200),
        lease_interval: Duration::from_millis(200),
        max_backoff: Duration::from_millis(500),
        publish_timeout: Duration::from_secs(2),
        ..RelayConfig::default()
    }
}
