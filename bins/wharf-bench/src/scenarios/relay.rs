//! Relay drain: a backlog of N committed outbox rows, one relay started on it, timed until every
//! row is published, acknowledged and deleted. Compared with L1, the publish rate of the same
//! messages with nothing but JetStream in the way.

use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use wharf_outbox::Relay;

use super::{deadline_for, progress, wait_for_count};
use crate::cli::Params;
use crate::env::BenchEnv;
use crate::results::{RelayDrain, Throughput};
use crate::workload::{self, ACCOUNTS};

/// Rows per filling transaction.
const FILL_TX_ROWS: u64 = 1_000;
/// Filling producers; each owns the accounts `account % FILLERS == index`, so no two contend
/// for an ordering key's lock.
const FILLERS: u64 = 4;

pub async fn run(env: &BenchEnv, params: &Params) -> anyhow::Result<RelayDrain> {
    let topology = env.topology("relay").await?;
    let producers = env.pool(u32::try_from(FILLERS).unwrap_or(4))?;
    let fill = fill_outbox(&producers, params.events).await?;
    progress(&format!(
        "relay: outbox filled with {} rows ({:.0} rows/s, untimed)",
        fill.count, fill.per_second
    ));
    // What autovacuum would have done by the time a real backlog is drained: planner stats.
    sqlx::query("ANALYZE outbox")
        .execute(&producers)
        .await
        .context("failed to analyze the outbox")?;
    producers.close().await;

    let pool = env.pool(relay_connections(params))?;
    let relay = Relay::new(
        pool.clone(),
        env.client.clone(),
        topology.namespace.clone(),
        crate::env::SCHEMA,
        params.relay.clone(),
    );
    let stats = relay.stats();
    let stop = CancellationToken::new();
    let start = Instant::now();
    let running = tokio::spawn(relay.run(stop.clone()));
    let waited = wait_for_count(
        "the relay to drain the outbox",
        start,
        params.events,
        deadline_for(params.events, 200),
        || stats.published(),
    )
    .await;
    stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(30), running).await;
    let (elapsed, timeline) = waited?;
    stopped
        .context("the relay did not stop within 30 s")?
        .context("the relay panicked")?;

    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .context("failed to count the outbox")?;
    pool.close().await;
    anyhow::ensure!(left == 0, "the relay reported done but {left} rows remain");
    let stream = topology.stream_name("TRADING");
    let stream_messages = env
        .js
        .get_stream(&stream)
        .await
        .with_context(|| format!("failed to look up stream {stream}"))?
        .info()
        .await
        .context("failed to read the stream's info")?
        .state
        .messages;

    let drain = Throughput::new(params.events, elapsed);
    progress(&format!(
        "relay drain: {:.0} rows/s ({} batches)",
        drain.per_second,
        stats.batches()
    ));
    Ok(RelayDrain {
        config: params.relay.clone(),
        fill,
        fill_tx_rows: FILL_TX_ROWS,
        drain,
        batches: stats.batches(),
        duplicates: stats.duplicates(),
        failures: stats.failures(),
        stream_messages,
        timeline,
    })
}

/// Pool size for a relay: a connection per worker, its lease connection, its listener.
pub fn relay_connections(params: &Params) -> u32 {
    u32::try_from(params.relay.workers + 4).unwrap_or(u32::MAX)
}

/// Enqueues `count` trades through `wharf_outbox::enqueue`, as producers would.
async fn fill_outbox(pool: &PgPool, count: u64) -> anyhow::Result<Throughput> {
    debug_assert_eq!(ACCOUNTS % FILLERS, 0, "fillers must own whole accounts");
    let start = Instant::now();
    let fillers = (0..FILLERS).map(|index| {
        let pool = pool.clone();
        async move {
            let mine: Vec<u64> = (index..count).step_by(FILLERS as usize).collect();
            for chunk in mine.chunks(FILL_TX_ROWS as usize) {
                let mut tx = pool.begin().await.context("failed to begin")?;
                for &seq in chunk {
                    wharf_outbox::enqueue(&mut tx, workload::trade(seq, SystemTime::now()))
                        .await
                        .context("failed to enqueue")?;
                }
                tx.commit().await.context("failed to commit the fill")?;
            }
            anyhow::Ok(())
        }
    });
    tokio::time::timeout(
        deadline_for(count, 200),
        futures::future::try_join_all(fillers),
    )
    .await
    .context("filling the outbox timed out")??;
    Ok(Throughput::new(count, start.elapsed()))
}
