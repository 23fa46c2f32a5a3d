//! L3: the consumer's apply transaction done directly in SQL — `BEGIN`, the inbox insert, the
//! ledger insert, `COMMIT` — one event per transaction, on `--concurrency` connections (16:
//! more than the consumer's slots, because PostgreSQL commits more single-event transactions
//! per second with more of them in flight). Nothing of NATS or the consumer runtime is
//! involved: it is what PostgreSQL allows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use anyhow::Context;
use sqlx::PgPool;
use wharf_proto::Event;
use wharf_proto::wharf::trading::v1::TradeExecuted;

use super::{deadline_for, progress};
use crate::cli::Params;
use crate::env::BenchEnv;
use crate::results::{ApplyLimit, Throughput};
use crate::workload;

pub async fn run(env: &BenchEnv, params: &Params) -> anyhow::Result<ApplyLimit> {
    let concurrency = params.concurrency;
    let pool = env.pool(u32::try_from(concurrency).unwrap_or(u32::MAX))?;
    env.reset_apply_tables(&pool).await?;

    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(apply_until(pool.clone(), Arc::clone(&next), params.events)))
        .collect();
    let all = futures::future::try_join_all(workers);
    let joined = tokio::time::timeout(deadline_for(params.events, 200), all)
        .await
        .context("L3 timed out")?
        .context("an L3 worker panicked")?;
    let elapsed = start.elapsed();
    for worker in joined {
        worker?;
    }
    pool.close().await;

    let throughput = Throughput::new(params.events, elapsed);
    progress(&format!(
        "L3 apply in SQL (concurrency {concurrency}): {:.0} rows/s",
        throughput.per_second
    ));
    Ok(ApplyLimit {
        concurrency,
        throughput,
    })
}

/// Applies events until `next` passes `count`.
async fn apply_until(pool: PgPool, next: Arc<AtomicU64>, count: u64) -> anyhow::Result<()> {
    let subject = TradeExecuted::SUBJECT;
    loop {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        if seq >= count {
            return Ok(());
        }
        let trade = workload::trade(seq, SystemTime::now());
        let event_id = uuid::Uuid::parse_str(&trade.event_id).context("event id is a UUID")?;
        let mut tx = pool.begin().await.context("failed to begin")?;
        sqlx::query(workload::INBOX_INSERT)
            .bind(workload::CONSUMER)
            .bind(event_id)
            .bind(subject)
            .execute(&mut *tx)
            .await
            .context("failed to insert the inbox row")?;
        workload::record(&mut tx, event_id, &trade)
            .await
            .context("failed to insert the ledger row")?;
        tx.commit().await.context("failed to commit")?;
    }
}
