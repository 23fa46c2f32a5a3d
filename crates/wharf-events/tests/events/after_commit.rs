//! The consumer's after-commit hook: it runs once for each event whose effect committed, after
//! the commit (the effect is visible from another connection when it runs), and never for an
//! event rolled back or absorbed by the inbox as a duplicate — on the one-event path and in
//! batches; and a batch's acks, confirmed once, leave nothing pending. Against the stack's
//! PostgreSQL and NATS, in a fresh database and namespace.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::context::PublishAckFuture;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wharf_events::consumer::{ConsumerStats, Handler};
use wharf_events::envelope::{self, MSG_ID};
use wharf_events::{Consumer, ConsumerConfig, EventContext, HandlerError, Namespace, Topology};
use wharf_proto::Event;
use wharf_proto::wharf::trading::v1::TradeExecuted;
use wharf_runtime::db;
use wharf_testkit::FreshDatabase;

const SCHEMA: &str = "svc";
/// A quantity the handler applies and then refuses for good (dead-lettered at once).
const PERMANENT: i64 = -1;
/// A quantity the handler applies and then refuses for now (retried, then dead-lettered).
const TRANSIENT: i64 = -2;

struct Harness {
    database: FreshDatabase,
    pool: PgPool,
    js: jetstream::Context,
    topology: Topology,
}

impl Harness {
    async fn new() -> Self {
        let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".to_owned());
        let client = async_nats::connect(url)
            .await
            .expect("NATS must be reachable at NATS_URL (run `wharf stack up`)");
        let database = FreshDatabase::create().await.expect("fresh database");
        db::migrate(&database.config, &wharf_events::migrations("svc", SCHEMA))
            .await
            .expect("inbox migrations");
        let pool = db::connect_lazy(&database.config, SCHEMA).expect("pool");
        sqlx::query("CREATE TABLE applied (event_id uuid PRIMARY KEY, quantity bigint NOT NULL)")
            .execute(&pool)
            .await
            .expect("applied table");
        let js = jetstream::new(client);
        let topology = Topology::declared(Namespace::new(&wharf_testkit::unique_name("ac")));
        topology.apply(&js).await.expect("topology");
        Self {
            database,
            pool,
            js,
            topology,
        }
    }

    /// Publishes `event`; `again` publishes it under a new message id, so JetStream stores it
    /// a second time and only the inbox can tell it is the same event.
    async fn publish(&self, event: &TradeExecuted, again: bool) -> PublishAckFuture {
        let (mut headers, payload) = envelope::encode(event, None);
        if again {
            headers.insert(MSG_ID, uuid::Uuid::now_v7().to_string().as_str());
        }
        self.js
            .publish_with_headers(
                self.topology.namespace.subject(TradeExecuted::SUBJECT),
                headers,
                payload,
            )
            .await
            .expect("publish")
    }

    /// The event ids whose effect is in `applied`.
    async fn applied(&self) -> Vec<String> {
        let mut ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT event_id FROM applied")
            .fetch_all(&self.pool)
            .await
            .expect("applied rows");
        ids.sort();
        ids.iter().map(uuid::Uuid::to_string).collect()
    }

    async fn finish(self) {
        self.pool.close().await;
        // The namespace's streams go too, so a developer's stack does not collect them.
        for stream in &self.topology.streams {
            let _ = self.js.delete_stream(&stream.name).await;
        }
        self.database.drop_now().await;
    }
}

fn trade(quantity: i64) -> TradeExecuted {
    let mut event = TradeExecuted {
        account_id: format!("account-{}", uuid::Uuid::now_v7()),
        instrument: "WHRF".to_owned(),
        quantity,
        ..TradeExecuted::default()
    };
    envelope::stamp(&mut event);
    event
}

/// Writes the event's row in the consumer's transaction, then refuses the events whose
/// quantity says so: a refused event's transaction has a row to roll back.
#[derive(Debug, Clone, Copy)]
struct Recorder;

impl Handler<TradeExecuted> for Recorder {
    async fn handle(
        &self,
        ctx: &EventContext,
        event: TradeExecuted,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), HandlerError> {
        let event_id = uuid::Uuid::parse_str(&ctx.envelope.event_id).expect("a UUID event id");
        sqlx::query("INSERT INTO applied (event_id, quantity) VALUES ($1, $2)")
            .bind(event_id)
            .bind(event.quantity)
            .execute(&mut **tx)
            .await?;
        match event.quantity {
            PERMANENT => Err(HandlerError::Permanent("refused for good".to_owned())),
            TRANSIENT => Err(HandlerError::Transient("refused for now".to_owned())),
            _ => Ok(()),
        }
    }
}

/// A hook's run: the event, and whether its effect was visible from another connection then.
type Seen = (String, bool);

/// The consumer, with a hook that reports each run and looks for the event's row through the
/// pool (not the consumer's transaction).
fn consumer(
    harness: &Harness,
    config: ConsumerConfig,
) -> (
    Consumer<TradeExecuted, Recorder>,
    mpsc::UnboundedReceiver<Seen>,
) {
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let pool = harness.pool.clone();
    let consumer = Consumer::new(
        harness.js.clone(),
        harness.pool.clone(),
        &harness.topology,
        config,
        Recorder,
    )
    .after_commit(move |ctx| {
        let (pool, seen_tx) = (pool.clone(), seen_tx.clone());
        let event_id = ctx.envelope.event_id.clone();
        async move {
            let visible: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM applied WHERE event_id = $1::uuid)",
            )
            .bind(&event_id)
            .fetch_one(&pool)
            .await
            .expect("look for the event's row");
            let _ = seen_tx.send((event_id, visible));
        }
    });
    (consumer, seen_rx)
}

fn config(name: &str) -> ConsumerConfig {
    ConsumerConfig {
        max_deliver: 2,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..ConsumerConfig::new(name)
    }
}

/// Waits until the consumer has settled every message, then stops it and returns its hook's
/// runs (the runner has returned, so none is still on its way).
async fn settle(
    consumer: Consumer<TradeExecuted, Recorder>,
    mut seen_rx: mpsc::UnboundedReceiver<Seen>,
    publish: impl AsyncFnOnce(),
    (applied, dead, duplicates): (u64, u64, u64),
) -> (Arc<ConsumerStats>, Vec<Seen>) {
    let stats = consumer.stats();
    let stop = CancellationToken::new();
    publish().await;
    let running = tokio::spawn(consumer.run(stop.clone()));
    wharf_testkit::wait_until(Duration::from_secs(30), "every message settled", || {
        let stats = Arc::clone(&stats);
        async move {
            stats.applied() >= applied
                && stats.dead_lettered() >= dead
                && stats.duplicates() >= duplicates
        }
    })
    .await
    .unwrap_or_else(|err| {
        panic!(
            "{err}: applied {} dead {} duplicates {}",
            stats.applied(),
            stats.dead_lettered(),
            stats.duplicates()
        )
    });
    stop.cancel();
    running
        .await
        .expect("the consumer task")
        .expect("the consumer ran");
    let mut seen = Vec::new();
    while let Ok(run) = seen_rx.try_recv() {
        seen.push(run);
    }
    assert_eq!(
        (stats.applied(), stats.dead_lettered(), stats.duplicates()),
        (applied, dead, duplicates),
        "nothing more was applied, dead-lettered or absorbed than expected"
    );
    (stats, seen)
}

/// Each committed event's hook ran exactly once, after its commit; no other event's did.
fn assert_ran_for_exactly(seen: &[Seen], committed: &[&TradeExecuted]) {
    let mut runs: HashMap<&str, usize> = HashMap::new();
    for (event_id, visible) in seen {
        assert!(
            visible,
            "the hook of {event_id} ran before its effect was visible"
        );
        *runs.entry(event_id.as_str()).or_default() += 1;
    }
    let expected: HashMap<&str, usize> = committed
        .iter()
        .map(|event| (event.event_id.as_str(), 1))
        .collect();
    assert_eq!(runs, expected, "one hook run per committed event, no other");
}

/// One event per transaction: the hook runs for the two events that committed; not for the
/// one refused for good, nor the one refused until dead-lettered (both rolled back: their rows
/// are not in the table), nor for the first event delivered again under a new message id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_runs_after_each_commit_and_never_for_rollbacks_or_duplicates() {
    let harness = Harness::new().await;
    let (first, refused, retried, second) =
        (trade(1), trade(PERMANENT), trade(TRANSIENT), trade(2));
    let (consumer, seen_rx) = consumer(&harness, config("one-by-one"));
    let consumer = consumer.ordered();
    let publish = async || {
        for (event, again) in [
            (&first, false),
            (&refused, false),
            (&retried, false),
            (&second, false),
            (&first, true),
        ] {
            harness.publish(event, again).await.await.expect("stored");
        }
    };
    let (stats, seen) = settle(consumer, seen_rx, publish, (2, 2, 1)).await;

    assert_eq!(
        stats.transactions(),
        2,
        "one transaction per committed event"
    );
    assert!(stats.retries() >= 1, "the transient refusal was retried");
    assert_ran_for_exactly(&seen, &[&first, &second]);
    let mut committed = vec![first.event_id.clone(), second.event_id.clone()];
    committed.sort();
    assert_eq!(
        harness.applied().await,
        committed,
        "the refusals rolled back"
    );
    harness.finish().await;
}

/// Batches: a backlog consumed several events per transaction, with an event refused inside a
/// batch (the batch starts over without it) and events published twice.
/// The hook runs once for each event that committed, and for nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_batches_the_hook_runs_only_for_the_events_that_committed() {
    let harness = Harness::new().await;
    let good: Vec<TradeExecuted> = (1..=12).map(trade).collect();
    let refused = trade(PERMANENT);
    let (consumer, seen_rx) = consumer(
        &harness,
        ConsumerConfig {
            concurrency: 4,
            max_batch: 16,
            ..config("batched")
        },
    );
    let publish = async || {
        // The whole backlog is stored before the consumer starts, so its pulls find several
        // messages waiting.
        let mut acks = Vec::new();
        for (index, event) in good.iter().enumerate() {
            acks.push(harness.publish(event, false).await);
            if index == 5 {
                acks.push(harness.publish(&refused, false).await);
                acks.push(harness.publish(&good[0], true).await);
            }
        }
        acks.push(harness.publish(&good[7], true).await);
        for ack in acks {
            ack.await.expect("stored");
        }
    };
    let (stats, seen) = settle(consumer, seen_rx, publish, (12, 1, 2)).await;

    assert!(
        stats.transactions() < stats.applied(),
        "events shared transactions ({} for {})",
        stats.transactions(),
        stats.applied()
    );
    let committed: Vec<&TradeExecuted> = good.iter().collect();
    assert_ran_for_exactly(&seen, &committed);
    let mut ids: Vec<String> = good.iter().map(|event| event.event_id.clone()).collect();
    ids.sort();
    assert_eq!(harness.applied().await, ids, "the refusal rolled back");
    harness.finish().await;
}

/// A batch's acks: plain ones, and the last one confirmed (by then the server has recorded
/// them all: it handles a connection's acks in order). Every confirmation came, and once the
/// consumer has returned nothing is left pending on the server: its ack floor is the last
/// message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_confirmation_per_batch_leaves_nothing_pending() {
    let harness = Harness::new().await;
    let events: Vec<TradeExecuted> = (1..=40).map(trade).collect();
    let name = "confirmed";
    let (consumer, seen_rx) = consumer(
        &harness,
        ConsumerConfig {
            concurrency: 2,
            max_batch: 16,
            ..config(name)
        },
    );
    let publish = async || {
        let mut acks = Vec::new();
        for event in &events {
            acks.push(harness.publish(event, false).await);
        }
        for ack in acks {
            ack.await.expect("stored");
        }
    };
    let (stats, _seen) = settle(consumer, seen_rx, publish, (40, 0, 0)).await;
    assert!(
        stats.transactions() < stats.applied(),
        "events shared transactions ({} for {})",
        stats.transactions(),
        stats.applied()
    );

    let stream = harness
        .js
        .get_stream(harness.topology.namespace.stream(TradeExecuted::STREAM))
        .await
        .expect("the stream");
    let info = stream
        .consumer_info(harness.topology.namespace.durable(name))
        .await
        .expect("the consumer's info");
    assert_eq!(info.num_ack_pending, 0, "every ack was recorded");
    assert_eq!(
        info.ack_floor.stream_sequence, 40,
        "acknowledged up to the last message"
    );
    assert_eq!(stats.ack_failures(), 0, "every confirmation came");
    harness.finish().await;
}
