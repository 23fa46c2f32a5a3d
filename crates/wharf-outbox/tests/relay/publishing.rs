//! Publishing committed rows, and only committed rows, exactly once.

use std::time::Duration;

use wharf_outbox::RelayConfig;

use crate::helpers::{Harness, Recorder, count_event_ids, fast_relay, trade};

/// Out-of-order commit: A enqueues first and stays open while B enqueues later and commits.
/// The relay publishes B; when A commits it publishes A too. A cursor-based relay would have
/// moved past A's lower id and lost it. Both are published exactly once.
#[tokio::test]
async fn out_of_order_commit_is_published_exactly_once() {
    let harness = Harness::new().await;
    let (_stats, _relay) = harness.relay(fast_relay());

    let mut a = harness.pool.begin().await.unwrap();
    let a_id = wharf_outbox::enqueue(&mut a, trade("account-a", 1))
        .await
        .unwrap();
    let mut b = harness.pool.begin().await.unwrap();
    let b_id = wharf_outbox::enqueue(&mut b, trade("account-b", 1))
        .await
        .unwrap();
    b.commit().await.unwrap();

    wharf_testkit::wait_until(Duration::from_secs(10), "B to be published", || async {
        harness.stream_len().await == 1
    })
    .await
    .unwrap();
    let a_uuid = uuid::Uuid::parse_str(&a_id).unwrap();
    let count_a = "SELECT count(*) FROM outbox WHERE event_id = $1";
    let inside: i64 = sqlx::query_scalar(count_a)
        .bind(a_uuid)
        .fetch_one(&mut *a)
        .await
        .unwrap();
    let outside: i64 = sqlx::query_scalar(count_a)
        .bind(a_uuid)
        .fetch_one(&harness.pool)
        .await
        .unwrap();
    assert_eq!(
        (inside, outside),
        (1, 0),
        "A's row exists, uncommitted, invisible to the relay"
    );

    a.commit().await.unwrap();
    harness.wait_outbox_empty(Duration::from_secs(10)).await;

    let counts = count_event_ids(&harness.stream_messages().await);
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert_eq!(counts[&a_id], 1);
    assert_eq!(counts[&b_id], 1);
    harness.finish().await;
}

/// A rolled-back transaction publishes nothing: the event only exists if the business rows do.
#[tokio::test]
async fn rolled_back_events_are_never_published() {
    let harness = Harness::new().await;
    let (_stats, _relay) = harness.relay(fast_relay());

    let mut rolled_back = harness.pool.begin().await.unwrap();
    wharf_outbox::enqueue(&mut rolled_back, trade("account-x", 1))
        .await
        .unwrap();
    rolled_back.rollback().await.unwrap();
    let committed = harness.enqueue("account-y", 1).await;

    harness.wait_outbox_empty(Duration::from_secs(10)).await;
    let counts = count_event_ids(&harness.stream_messages().await);
    assert_eq!(counts.keys().collect::<Vec<_>>(), vec![&committed]);
    harness.finish().await;
}

/// The relay carries the producer's envelope: message id, type, key, and the traceparent
/// stored with the row.
#[tokio::test]
async fn envelope_headers_are_carried() {
    let harness = Harness::new().await;
    let mut tx = harness.pool.begin().await.unwrap();
    let id = wharf_outbox::enqueue(&mut tx, trade("account-h", 7))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    sqlx::query("UPDATE outbox SET traceparent = $1")
        .bind(traceparent)
        .execute(&harness.pool)
        .await
        .unwrap();

    let (_stats, _relay) = harness.relay(fast_relay());
    harness.wait_outbox_empty(Duration::from_secs(10)).await;
    let messages = harness.stream_messages().await;
    let headers = &messages[0].headers;
    assert_eq!(headers.get("Nats-Msg-Id").unwrap().as_str(), id);
    assert_eq!(
        headers.get("Wharf-Event-Type").unwrap().as_str(),
        "wharf.trading.v1.TradeExecuted"
    );
    assert_eq!(headers.get("Wharf-Key").unwrap().as_str(), "account-h");
    assert_eq!(headers.get("traceparent").unwrap().as_str(), traceparent);
    assert_eq!(
        messages[0].subject.as_str(),
        harness.namespace.subject("trading.trade.executed")
    );
    harness.finish().await;
}

/// End to end: committed events reach a consumer, which applies each once.
#[tokio::test]
async fn committed_events_are_applied_once() {
    let harness = Harness::new().await;
    let (_stats, _relay) = harness.relay(fast_relay());
    let recorder = Recorder::default();
    let consumer = harness.consumer(
        wharf_events::ConsumerConfig::new("ledger"),
        recorder.clone(),
    );
    let stats = consumer.stats();
    let running = tokio::spawn(consumer.run(harness.stop.clone()));

    for seq in 0..50 {
        harness.enqueue(&format!("account-{}", seq % 5), seq).await;
    }
    harness.wait_applied(50, Duration::from_secs(20)).await;
    assert_eq!(harness.applied_len().await, 50);
    // The counter moves just after each commit.
    wharf_testkit::wait_until(
        Duration::from_secs(10),
        "the consumer counter to settle",
        || async { stats.applied() == 50 },
    )
    .await
    .unwrap();
    harness.stop.cancel();
    running.await.unwrap().unwrap();
    harness.finish().await;
}

/// A backlog of whole batches: each full batch's commit begins the next batch's transaction
/// (one round trip fewer), every row is published once, and the chained claim that finds the
/// outbox empty ends its transaction, so the drained relay waits holding none.
#[tokio::test]
async fn full_batches_chain_and_an_idle_relay_holds_no_transaction() {
    let harness = Harness::new().await;
    for seq in 1..=24 {
        harness.enqueue(&format!("account-{}", seq % 5), seq).await;
    }
    let (stats, _relay) = harness.relay(RelayConfig {
        batch_size: 4,
        // No poll while the test looks: after the drain, the relay only waits.
        poll_interval: Duration::from_secs(60),
        ..fast_relay()
    });
    harness.wait_outbox_empty(Duration::from_secs(10)).await;
    // The sixth full batch chained into a claim that found nothing.
    wharf_testkit::wait_until(
        Duration::from_secs(10),
        "the empty chained claim",
        || async { stats.claims() > stats.batches() },
    )
    .await
    .unwrap();

    let counts = count_event_ids(&harness.stream_messages().await);
    assert_eq!(counts.len(), 24, "{counts:?}");
    assert!(counts.values().all(|count| *count == 1), "{counts:?}");
    assert_eq!(
        (stats.batches(), stats.chained()),
        (6, 6),
        "six full batches, each beginning the next"
    );
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND state LIKE 'idle in transaction%'",
    )
    .fetch_one(&harness.pool)
    .await
    .unwrap();
    assert_eq!(open, 0, "no connection waits idle in a transaction");
    harness.finish().await;
}
