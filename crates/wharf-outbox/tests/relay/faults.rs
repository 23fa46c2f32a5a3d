//! Real faults: NATS killed and restarted, a consumer dying between commit and ack, a poison
//! message. After each, what committed is all there, applied once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wharf_events::ConsumerConfig;
use wharf_testkit::TestNats;

use crate::helpers::{Harness, Recorder, consumer_stats_line, count_event_ids, fast_relay};

/// NATS is killed (-9) and restarted while the relay works: the relay resumes by itself, every
/// committed event is in the stream exactly once, and the outbox drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_survives_a_nats_restart() {
    let mut nats = TestNats::start().await.unwrap();
    let harness = Harness::with_client(nats.client().await.unwrap()).await;
    let (stats, _relay) = harness.relay(fast_relay());

    let mut ids = Vec::new();
    for seq in 0..300 {
        ids.push(harness.enqueue(&format!("account-{}", seq % 10), seq).await);
    }
    wharf_testkit::wait_until(Duration::from_secs(20), "some events published", || async {
        stats.published() > 0
    })
    .await
    .unwrap();

    nats.kill9();
    // Commits continue while NATS is down: the outbox takes them.
    for seq in 300..600 {
        ids.push(harness.enqueue(&format!("account-{}", seq % 10), seq).await);
    }
    assert!(
        harness.outbox_len().await >= 300,
        "events wait in the outbox while NATS is down"
    );
    // Keep NATS down until the relay has really run into the outage (its publishes time out).
    wharf_testkit::wait_until(
        Duration::from_secs(30),
        "the relay to hit the outage",
        || async { stats.failures() > 0 },
    )
    .await
    .unwrap();
    nats.restart().await.unwrap();

    harness.wait_outbox_empty(Duration::from_secs(60)).await;
    let counts = count_event_ids(&harness.stream_messages().await);
    assert_eq!(counts.len(), 600, "every committed event is in the stream");
    assert!(counts.values().all(|&n| n == 1), "and each exactly once");
    for id in &ids {
        assert!(counts.contains_key(id));
    }
    harness.finish().await;
}

/// A consumer that dies after committing its effect but before acking: the event is redelivered
/// and the inbox absorbs it, so the effect is applied exactly once and the handler ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_killed_between_commit_and_ack_applies_once() {
    let harness = Harness::new().await;
    let recorder = Recorder::default();
    let mut config = ConsumerConfig::new("ledger");
    config.ack_wait = Duration::from_secs(1);

    // First instance: parks forever after its first commit, standing for a crash there.
    let (parked_tx, mut parked_rx) = tokio::sync::mpsc::unbounded_channel();
    let first_stop = CancellationToken::new();
    let first = harness
        .consumer(config.clone(), recorder.clone())
        .after_commit(move |_ctx| {
            let _ = parked_tx.send(());
            std::future::pending::<()>()
        });
    let first_task = tokio::spawn(first.run(first_stop.clone()));

    let event_id = harness.enqueue("account-crash", 1).await;
    let (_relay_stats, _relay) = harness.relay(fast_relay());
    tokio::time::timeout(Duration::from_secs(20), parked_rx.recv())
        .await
        .expect("the first consumer commits")
        .unwrap();
    assert_eq!(harness.applied_len().await, 1, "the effect committed");
    first_task.abort();

    // Second instance of the same durable consumer.
    let second = harness.consumer(config, recorder.clone());
    let stats = second.stats();
    let _second_task = tokio::spawn(second.run(harness.stop.clone()));
    wharf_testkit::wait_until(
        Duration::from_secs(20),
        "the redelivery to be absorbed",
        || async { stats.duplicates() >= 1 },
    )
    .await
    .unwrap_or_else(|err| panic!("{err}: {}", consumer_stats_line(&stats)));

    assert_eq!(harness.applied_len().await, 1, "applied exactly once");
    assert_eq!(
        recorder.calls.load(Ordering::SeqCst),
        1,
        "the handler ran once"
    );
    assert!(stats.redeliveries() >= 1, "the server really redelivered");
    let applied: uuid::Uuid = sqlx::query_scalar("SELECT event_id FROM applied")
        .fetch_one(&harness.pool)
        .await
        .unwrap();
    assert_eq!(applied.to_string(), event_id);
    harness.finish().await;
}

/// A poison message is retried with backoff, dead-lettered after max_deliver attempts with its
/// error and delivery count, and once the cause is fixed, a replay applies it exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_is_dead_lettered_then_replayed() {
    let harness = Harness::new().await;
    let recorder = Recorder::default();
    *recorder.poison_account.lock().unwrap() = Some("account-poison".to_owned());
    recorder.poisoned.store(true, Ordering::SeqCst);
    let mut config = ConsumerConfig::new("ledger");
    config.max_deliver = 3;
    config.backoff_base = Duration::from_millis(50);
    let consumer = harness.consumer(config, recorder.clone());
    let stats = consumer.stats();
    let _consumer = tokio::spawn(consumer.run(harness.stop.clone()));
    let (_relay_stats, _relay) = harness.relay(fast_relay());

    let poison_id = harness.enqueue("account-poison", 1).await;
    let healthy_id = harness.enqueue("account-fine", 1).await;
    wharf_testkit::wait_until(
        Duration::from_secs(30),
        "the poison to be dead-lettered",
        || async { stats.dead_lettered() == 1 },
    )
    .await
    .unwrap_or_else(|err| panic!("{err}: {}", consumer_stats_line(&stats)));
    harness.wait_applied(1, Duration::from_secs(10)).await;

    let letters = wharf_events::dlq::list(&harness.js, &harness.namespace, 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0].letter;
    assert_eq!(letter.original_subject, "trading.trade.executed");
    assert_eq!(letter.deliveries, 3);
    assert_eq!(letter.consumer, "ledger");
    assert!(letter.error.contains("poisoned"), "{}", letter.error);
    assert_eq!(
        letter.headers.get("Wharf-Event-Id").unwrap().as_str(),
        poison_id
    );
    let calls = recorder.calls.load(Ordering::SeqCst);
    assert!(
        (4..=5).contains(&calls),
        "three failed attempts and the healthy event, handled again only if it shared the \
         poison's first batch (which then started over without it): {calls} calls"
    );

    // Fix the cause, then replay.
    recorder.poisoned.store(false, Ordering::SeqCst);
    wharf_events::dlq::replay(&harness.js, &harness.namespace, letters[0].sequence)
        .await
        .unwrap();
    harness.wait_applied(2, Duration::from_secs(20)).await;
    assert!(
        wharf_events::dlq::list(&harness.js, &harness.namespace, 10)
            .await
            .unwrap()
            .is_empty(),
        "replayed letters leave the DLQ"
    );
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT event_id FROM applied ORDER BY position")
        .fetch_all(&harness.pool)
        .await
        .unwrap();
    assert_eq!(
        ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec![healthy_id, poison_id]
    );
    harness.finish().await;
}

/// A message whose payload cannot be decoded goes to the DLQ on its first delivery: retrying
/// could never fix it.
#[tokio::test]
async fn undecodable_payload_is_dead_lettered_at_once() {
    let harness = Harness::new().await;
    let consumer = harness.consumer(ConsumerConfig::new("ledger"), Recorder::default());
    let stats = consumer.stats();
    let _consumer = tokio::spawn(consumer.run(harness.stop.clone()));

    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "garbage-1");
    headers.insert("Wharf-Event-Id", "0190a0a0-0000-7000-8000-000000000001");
    headers.insert("Wharf-Event-Type", "wharf.trading.v1.TradeExecuted");
    harness
        .js
        .publish_with_headers(
            harness.namespace.subject("trading.trade.executed"),
            headers,
            vec![0xff, 0xff, 0xff].into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    wharf_testkit::wait_until(
        Duration::from_secs(20),
        "the garbage to be dead-lettered",
        || async { stats.dead_lettered() == 1 },
    )
    .await
    .unwrap();
    let letters = wharf_events::dlq::list(&harness.js, &harness.namespace, 10)
        .await
        .unwrap();
    assert_eq!(letters[0].letter.deliveries, 1);
    assert!(
        letters[0].letter.error.starts_with("undecodable"),
        "{}",
        letters[0].letter.error
    );
    assert_eq!(harness.applied_len().await, 0);
    harness.finish().await;
}
