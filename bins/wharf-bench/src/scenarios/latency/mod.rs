//! Commit → consumer-commit latency, open loop, from empty tables: the relay and the consumer
//! run throughout while a producer commits one trade (its own transaction, `enqueue`, commit)
//! every 1/R seconds.
//!
//! Event i is due at t0 + i/R. It is committed at or after that instant — never skipped, and
//! never re-timed when late — and its intended send time travels in the event (`occurred_at`).
//! The consumer's handler reads it inside its transaction; the after-commit hook records
//! now − intended. A producer, relay or consumer that falls behind therefore shows up in the
//! latency instead of silently lowering the rate (coordinated omission).
//!
//! # Layout
//! - [`clock`]: intended time in, latency out.
//! - [`producer`]: the paced producer.
//! - [`stages`]: progress of each stage over time, to show where events wait.

mod clock;
mod producer;
mod stages;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use wharf_events::{Consumer, EventContext};
use wharf_outbox::Relay;
use wharf_proto::wharf::trading::v1::TradeExecuted;

use self::clock::{Clock, ClockObserver};
use self::producer::{PRODUCERS, Schedule};
use self::stages::Stages;
use super::consume::{consumer_config, consumer_connections};
use super::relay::relay_connections;
use super::{progress, wait_for_count};
use crate::cli::Params;
use crate::env::BenchEnv;
use crate::results::{LatencyRun, Percentiles};
use crate::workload::{self, LedgerHandler};

/// Events sent (and applied) before t0, so connections and pull requests are warm.
pub const WARMUP: u64 = 50;

pub async fn run(env: &BenchEnv, params: &Params) -> anyhow::Result<LatencyRun> {
    let topology = env.topology("latency").await?;
    let producers = env.pool(u32::try_from(PRODUCERS).unwrap_or(16))?;
    // Steady state at a fixed rate, not the aftermath of the drains before it: they leave
    // 100,000 dead outbox rows and full inbox and ledger tables that autovacuum would otherwise
    // be cleaning up during this run. Like the apply scenarios, start from empty tables.
    sqlx::query("TRUNCATE outbox, inbox, ledger")
        .execute(&producers)
        .await
        .context("failed to empty the outbox, inbox and ledger")?;
    let clock = Clock::new();
    let stop = CancellationToken::new();

    let relay = Relay::new(
        env.pool(relay_connections(params))?,
        env.client.clone(),
        topology.namespace.clone(),
        crate::env::SCHEMA,
        params.relay.clone(),
    );
    let relay_stats = relay.stats();
    let waker = relay.waker();
    let relay = tokio::spawn(relay.run(stop.clone()));
    let hook_clock = Arc::clone(&clock);
    let consumer = Consumer::<TradeExecuted, _>::new(
        env.js.clone(),
        env.pool(consumer_connections(params))?,
        &topology,
        consumer_config(params),
        LedgerHandler(ClockObserver(Arc::clone(&clock))),
    )
    .after_commit(move |ctx: &EventContext| {
        hook_clock.committed(ctx);
        std::future::ready(())
    });
    let applied = consumer.stats();
    let consumer = tokio::spawn(consumer.run(stop.clone()));

    let measured = async {
        let warm = Schedule {
            rate: params.rate,
            total: WARMUP,
            first_seq: 0,
        };
        producer::paced(
            &producers,
            &waker,
            &clock,
            warm,
            Instant::now(),
            SystemTime::now(),
        )
        .await?;
        wait_for_count(
            "the warm-up events",
            Instant::now(),
            WARMUP,
            Duration::from_secs(30),
            || applied.applied(),
        )
        .await?;

        let schedule = Schedule {
            rate: params.rate,
            total: params.latency_events(),
            first_seq: WARMUP,
        };
        progress(&format!(
            "latency: {} events at {}/s, open loop",
            schedule.total, params.rate
        ));
        let lead = Duration::from_millis(20);
        let (t0, t0_wall) = (Instant::now() + lead, SystemTime::now() + lead);
        clock.start_at(t0_wall);
        let stages = Stages {
            clock: Arc::clone(&clock),
            relay: Arc::clone(&relay_stats),
            consumer: Arc::clone(&applied),
            schedule,
        }
        .record(t0, stop.child_token());
        let paced = tokio::time::timeout(
            params.duration() + Duration::from_secs(60),
            producer::paced(&producers, &waker, &clock, schedule, t0, t0_wall),
        )
        .await
        .context("the paced producer overran its deadline")??;
        wait_for_count(
            "every event to be applied",
            t0,
            schedule.total,
            params.duration() + Duration::from_secs(60),
            || clock.recorded(),
        )
        .await?;
        anyhow::Ok((schedule, paced, stages))
    }
    .await;

    stop.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(60), async {
        let relay = relay.await;
        let consumer = consumer.await;
        (relay, consumer)
    })
    .await;
    producers.close().await;
    let (schedule, paced, stages) = measured?;
    let stages = stages.await.context("the stage sampler panicked")?;
    let (relay, consumer) = stopped.context("the relay and consumer did not stop within 60 s")?;
    relay.context("the relay panicked")?;
    consumer
        .context("the consumer panicked")?
        .context("the consumer failed")?;

    let end_to_end = Percentiles::from_micros(&clock.end_to_end());
    progress(&format!(
        "latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; machine stalls {}",
        end_to_end.p50_ms, end_to_end.p99_ms, end_to_end.max_ms, paced.stalls,
    ));
    Ok(LatencyRun {
        target_rate: params.rate,
        duration_s: params.duration_s,
        events: schedule.total,
        achieved_rate: workload::per_second(schedule.total, paced.elapsed),
        end_to_end,
        producer_commit: Percentiles::from_micros(&paced.commit),
        commit_to_consumer: Percentiles::from_micros(&clock.commit_to_consumer()),
        commit_to_handler: Percentiles::from_micros(&clock.commit_to_handler()),
        handler_to_commit: Percentiles::from_micros(&clock.handler_to_commit()),
        relay: params.relay.clone(),
        consumer_concurrency: params.consumer_concurrency,
        relay_batches: relay_stats.batches(),
        relay_claims: relay_stats.claims(),
        consumer_transactions: applied.transactions(),
        stalls: paced.stalls,
        stages,
    })
}
