//! Order per key with two relays sharing the outbox.

use std::collections::HashMap;
use std::time::Duration;

use wharf_events::ConsumerConfig;
use wharf_outbox::RelayConfig;

use crate::helpers::{Harness, Recorder, fast_relay};

const KEYS: i64 = 100;
const EVENTS: i64 = 10_000;

/// Two relays of four workers each (batches overlapping within a relay too) and 10,000 events
/// over 100 keys, committed by concurrent producers: every key's events are in commit order in
/// the stream, and applied in that order by a consumer that handles one message at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_keep_per_key_order() {
    let harness = Harness::new().await;
    let overlapping = || RelayConfig {
        workers: 4,
        ..fast_relay()
    };
    let (stats_a, _relay_a) = harness.relay(overlapping());
    let (stats_b, _relay_b) = harness.relay(overlapping());
    let consumer = harness
        .consumer(ConsumerConfig::new("ordered"), Recorder::default())
        .ordered();
    let _consumer = tokio::spawn(consumer.run(harness.stop.clone()));

    // 8 producers, each owning a slice of the keys and committing each key's events in order.
    let producers: Vec<_> = (0..8)
        .map(|producer| {
            let pool = harness.pool.clone();
            tokio::spawn(async move {
                for seq in 0..EVENTS / KEYS {
                    for key in (producer..KEYS).step_by(8) {
                        let mut tx = pool.begin().await.unwrap();
                        wharf_outbox::enqueue(
                            &mut tx,
                            crate::helpers::trade(&format!("key-{key}"), seq),
                        )
                        .await
                        .unwrap();
                        tx.commit().await.unwrap();
                    }
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    harness.wait_outbox_empty(Duration::from_secs(120)).await;
    // The counters move just after each delete commits.
    wharf_testkit::wait_until(
        Duration::from_secs(10),
        "the relay counters to settle",
        || async { stats_a.published() + stats_b.published() == EVENTS as u64 },
    )
    .await
    .unwrap();
    assert!(
        stats_a.published() > 0 && stats_b.published() > 0,
        "both relays shared the work: {} and {}",
        stats_a.published(),
        stats_b.published()
    );

    // In the stream: per key, sequence numbers strictly increase.
    let messages = harness.stream_messages().await;
    assert_eq!(messages.len() as i64, EVENTS);
    let mut last: HashMap<String, i64> = HashMap::new();
    for message in &messages {
        let event: wharf_proto::wharf::trading::v1::TradeExecuted =
            prost::Message::decode(message.payload.as_ref()).unwrap();
        if let Some(previous) = last.insert(event.account_id.clone(), event.quantity) {
            assert!(
                event.quantity > previous,
                "{}: {} after {}",
                event.account_id,
                event.quantity,
                previous
            );
        }
    }

    // At the one-at-a-time consumer: applied in the same order.
    harness.wait_applied(EVENTS, Duration::from_secs(180)).await;
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT account_id, seq FROM applied ORDER BY position")
            .fetch_all(&harness.pool)
            .await
            .unwrap();
    let mut last: HashMap<String, i64> = HashMap::new();
    for (account, seq) in rows {
        if let Some(previous) = last.insert(account.clone(), seq) {
            assert!(seq > previous, "{account}: applied {seq} after {previous}");
        }
    }
    harness.finish().await;
}
