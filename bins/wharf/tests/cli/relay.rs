//! `wharf relay` as a separate process, killed with SIGKILL mid-drain and restarted: every
//! committed event is published, JetStream drops the re-published duplicates (Nats-Msg-Id),
//! and a consumer applies each event exactly once.

use std::process::{Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;
use wharf_events::consumer::Handler;
use wharf_events::{Consumer, ConsumerConfig, EventContext, HandlerError, Namespace, Topology};
use wharf_proto::wharf::trading::v1::TradeExecuted;
use wharf_runtime::db;
use wharf_testkit::FreshDatabase;

use crate::helpers::{Running, wharf};

const EVENTS: i64 = 10_000;

struct Ledger;

impl Handler<TradeExecuted> for Ledger {
    async fn handle(
        &self,
        ctx: &EventContext,
        event: TradeExecuted,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), HandlerError> {
        let event_id = uuid::Uuid::parse_str(&ctx.envelope.event_id)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        sqlx::query("INSERT INTO ledger (event_id, account_id) VALUES ($1, $2)")
            .bind(event_id)
            .bind(event.account_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

fn relay_command(database_url: &str, nats_url: &str, namespace: &str) -> Command {
    let mut command = wharf();
    command
        .args(["relay", "--schema", "svc"])
        .args(["--set", &format!("database.url={database_url}")])
        .args(["--set", &format!("nats.url={nats_url}")])
        .args(["--set", &format!("events.namespace={namespace}")])
        .args(["--set", "relay.batch_size=256"])
        .stderr(Stdio::null());
    command
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_mid_drain_loses_and_duplicates_nothing() {
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".into());
    let database = FreshDatabase::create().await.unwrap();
    db::migrate(&database.config, &wharf_outbox::migrations("svc", "svc"))
        .await
        .unwrap();
    db::migrate(&database.config, &wharf_events::migrations("svc", "svc"))
        .await
        .unwrap();
    let pool = db::connect_lazy(&database.config, "svc").unwrap();
    sqlx::query("CREATE TABLE ledger (event_id UUID PRIMARY KEY, account_id TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();

    let prefix = wharf_testkit::unique_name("r");
    let namespace = Namespace::new(&prefix);
    let client = async_nats::connect(&nats_url).await.unwrap();
    let js = jetstream::new(client);
    let topology = Topology::declared(namespace.clone());
    topology.apply(&js).await.unwrap();

    // The backlog, committed before any relay runs.
    for chunk in 0..EVENTS / 1000 {
        let mut tx = pool.begin().await.unwrap();
        for i in 0..1000 {
            let event = TradeExecuted {
                account_id: format!("account-{}", (chunk * 1000 + i) % 97),
                ..Default::default()
            };
            wharf_outbox::enqueue(&mut tx, event).await.unwrap();
        }
        tx.commit().await.unwrap();
    }

    let stop = CancellationToken::new();
    let mut config = ConsumerConfig::new("ledger");
    config.concurrency = 16;
    let consumer = Consumer::new(js.clone(), pool.clone(), &topology, config, Ledger);
    let stats = consumer.stats();
    let consuming = tokio::spawn(consumer.run(stop.clone()));

    let stream_len = || {
        let js = js.clone();
        let name = topology.stream_name("TRADING");
        async move {
            js.get_stream(name)
                .await
                .unwrap()
                .info()
                .await
                .unwrap()
                .state
                .messages
        }
    };

    // First relay: killed with SIGKILL as soon as it has published something.
    let mut first = Running::spawn(relay_command(&database.config.url, &nats_url, &prefix));
    wharf_testkit::wait_until(
        Duration::from_secs(60),
        "the first relay to publish",
        || async { stream_len().await > 0 },
    )
    .await
    .unwrap();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // Killed mid-drain: some events are in the stream, and rows remain, typically including
    // rows of a batch that was published but whose delete never committed.
    let left = count(&pool, "outbox").await;
    let published = stream_len().await;
    assert!(
        left > 0 && published > 0,
        "killed mid-drain: {published} published, {left} rows left"
    );
    assert!(
        published + left as u64 >= EVENTS as u64,
        "nothing vanished: {published} + {left}"
    );

    // Second relay finishes the job.
    let _second = Running::spawn(relay_command(&database.config.url, &nats_url, &prefix));
    wharf_testkit::wait_until(Duration::from_secs(120), "the outbox to drain", || async {
        count(&pool, "outbox").await == 0
    })
    .await
    .unwrap();
    assert_eq!(
        stream_len().await,
        EVENTS as u64,
        "each event stored once in the stream"
    );

    wharf_testkit::wait_until(Duration::from_secs(120), "every event applied", || async {
        count(&pool, "ledger").await == EVENTS
    })
    .await
    .unwrap();
    let distinct: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT event_id) FROM inbox WHERE consumer = 'ledger'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(distinct, EVENTS);
    wharf_testkit::wait_until(
        Duration::from_secs(10),
        "the consumer counter to settle",
        || async { stats.applied() == EVENTS as u64 },
    )
    .await
    .unwrap();

    stop.cancel();
    consuming.await.unwrap().unwrap();
    pool.close().await;
    database.drop_now().await;
}
