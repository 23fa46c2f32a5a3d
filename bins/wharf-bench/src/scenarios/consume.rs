//! Consumer drain: N events already in the stream, the idempotent consumer started on them with
//! the ledger handler, timed until all N are applied. Compared with L3, the same transactions
//! done directly in SQL (at L3's own concurrency: each is measured at its best).

use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use wharf_events::{Consumer, ConsumerConfig};

use super::{deadline_for, progress, publish, wait_for_count};
use crate::cli::Params;
use crate::env::BenchEnv;
use crate::results::ConsumerDrain;
use crate::workload::{self, LedgerHandler, Unobserved};

pub async fn run(env: &BenchEnv, params: &Params) -> anyhow::Result<ConsumerDrain> {
    let topology = env.topology("consume").await?;
    let subject = workload::subject(&topology.namespace);
    let backlog: Vec<_> = (0..params.events)
        .map(|seq| workload::message(&workload::trade(seq, SystemTime::now())))
        .collect();
    let prepublish =
        publish::pipelined(&publish::context(&env.client, 256), &subject, backlog, 256)
            .await
            .context("failed to publish the consumer's backlog")?;
    progress(&format!(
        "consumer: {} events published ({:.0} msg/s, untimed)",
        prepublish.count, prepublish.per_second
    ));

    let pool = env.pool(consumer_connections(params))?;
    env.reset_apply_tables(&pool).await?;
    let config = consumer_config(params);
    let pull_batch = config.batch;
    let consumer = Consumer::new(
        env.js.clone(),
        pool.clone(),
        &topology,
        config,
        LedgerHandler(Unobserved),
    );
    let stats = consumer.stats();
    let stop = CancellationToken::new();
    let start = Instant::now();
    let running = tokio::spawn(consumer.run(stop.clone()));
    let waited = wait_for_count(
        "the consumer to apply the backlog",
        start,
        params.events,
        deadline_for(params.events, 100),
        || stats.applied(),
    )
    .await;
    stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(60), running).await;
    let (elapsed, timeline) = waited?;
    stopped
        .context("the consumer did not stop within 60 s")?
        .context("the consumer panicked")?
        .context("the consumer failed")?;

    let ledger_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger")
        .fetch_one(&pool)
        .await
        .context("failed to count the ledger")?;
    pool.close().await;
    let drain = crate::results::Throughput::new(params.events, elapsed);
    progress(&format!(
        "consumer drain: {:.0} events/s (concurrency {}, {:.1} events per transaction)",
        drain.per_second,
        params.consumer_concurrency,
        per_transaction(stats.applied(), stats.transactions())
    ));
    Ok(ConsumerDrain {
        concurrency: params.consumer_concurrency,
        pull_batch,
        prepublish,
        drain,
        transactions: stats.transactions(),
        duplicates: stats.duplicates(),
        redeliveries: stats.redeliveries(),
        retries: stats.retries(),
        ledger_rows,
        timeline,
    })
}

/// The consumer as the bench runs it: the CLI's consumer concurrency, everything else the
/// default.
pub fn consumer_config(params: &Params) -> ConsumerConfig {
    ConsumerConfig {
        concurrency: params.consumer_concurrency,
        ..ConsumerConfig::new(workload::CONSUMER)
    }
}

/// A connection per concurrent handler, and a few spare.
pub fn consumer_connections(params: &Params) -> u32 {
    u32::try_from(params.consumer_concurrency + 4).unwrap_or(u32::MAX)
}

/// Mean events per apply transaction.
pub fn per_transaction(applied: u64, transactions: u64) -> f64 {
    applied as f64 / transactions.max(1) as f64
}
