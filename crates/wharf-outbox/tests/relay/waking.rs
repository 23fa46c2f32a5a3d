//! Wake-ups after commit: a relay that would otherwise not poll for an hour publishes a row as
//! soon as its producer wakes it, whether the relay runs in the producer's process or not.
//! (Rows committed without a wake are published by the poll: every other test here commits
//! that way, against a 200 ms poll.)

use std::sync::Arc;
use std::time::Duration;

use wharf_outbox::{RelayConfig, RelayStats, Waker};

use crate::helpers::{Harness, fast_relay, trade};

fn polling_hourly() -> RelayConfig {
    RelayConfig {
        poll_interval: Duration::from_secs(3600),
        ..fast_relay()
    }
}

/// Waits until the relay has passed its start-up: it LISTENs, and it has claimed once (what
/// it found at start). From then on only a wake (or the hourly poll) makes it claim again.
async fn wait_idle(harness: &Harness, stats: &Arc<RelayStats>) {
    wharf_testkit::wait_until(Duration::from_secs(10), "the relay to listen", || async {
        let listening: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        )
        .fetch_one(&harness.pool)
        .await
        .unwrap();
        listening > 0
    })
    .await
    .unwrap();
    wharf_testkit::wait_until(
        Duration::from_secs(10),
        "the relay's first claim",
        || async { stats.claims() > 0 },
    )
    .await
    .unwrap();
}

/// Waits for the relay to count `expected` rows as published: it counts them after their
/// acks and its delete's commit, a moment after the stream shows them. The stream itself is
/// checked first: exactly `expected` messages, none twice.
async fn assert_published(harness: &Harness, stats: &Arc<RelayStats>, expected: u64) {
    assert_eq!(harness.stream_len().await, expected);
    wharf_testkit::wait_until(
        Duration::from_secs(10),
        "the relay to count what it published",
        || async { stats.published() == expected },
    )
    .await
    .unwrap();
}

/// Commits one event through `waker` and waits for it to reach the stream.
async fn commit_and_see_it_published(harness: &Harness, waker: &Waker, seq: i64) {
    let before = harness.stream_len().await;
    let mut tx = harness.pool.begin().await.unwrap();
    wharf_outbox::enqueue(&mut tx, trade("account-wake", seq))
        .await
        .unwrap();
    waker.commit(tx).await.unwrap();
    wharf_testkit::wait_until(
        Duration::from_secs(10),
        "the woken relay to publish",
        || async { harness.stream_len().await == before + 1 },
    )
    .await
    .unwrap();
}

/// The relay in the producer's process owns every bucket: it is woken directly.
#[tokio::test]
async fn a_relay_in_this_process_publishes_as_soon_as_it_is_woken() {
    let harness = Harness::new().await;
    let relay = harness.unstarted_relay(polling_hourly());
    let waker = relay.waker();
    let (stats, _relay) = harness.start(relay);
    wait_idle(&harness, &stats).await;

    for seq in 1..=3 {
        commit_and_see_it_published(&harness, &waker, seq).await;
    }
    assert_published(&harness, &stats, 3).await;
    harness.finish().await;
}

/// A producer without a relay of its own wakes the relays through PostgreSQL.
#[tokio::test]
async fn a_relay_in_another_process_is_woken_through_postgres() {
    let harness = Harness::new().await;
    let (stats, _relay) = harness.relay(polling_hourly());
    wait_idle(&harness, &stats).await;

    let waker = Waker::notifying(harness.pool.clone());
    for seq in 1..=3 {
        commit_and_see_it_published(&harness, &waker, seq).await;
    }
    assert_published(&harness, &stats, 3).await;
    harness.finish().await;
}

/// A local relay that does not own every bucket (here: none, it never started) is not enough:
/// the wake also reaches the relay that owns them, in another process.
#[tokio::test]
async fn a_local_relay_without_the_buckets_also_wakes_the_others() {
    let harness = Harness::new().await;
    let idle_local = harness.unstarted_relay(polling_hourly());
    let (stats, _relay) = harness.relay(polling_hourly());
    wait_idle(&harness, &stats).await;

    let waker = idle_local.waker();
    for seq in 1..=3 {
        commit_and_see_it_published(&harness, &waker, seq).await;
    }
    assert_published(&harness, &stats, 3).await;
    harness.finish().await;
}
