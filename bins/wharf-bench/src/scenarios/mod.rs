//! The measurements, run one after another so they never compete for the machine's cores.
//!
//! Limits first (L1, L3), then the system (relay drain, consumer drain, latency). Each scenario
//! has its own JetStream namespace; the apply scenarios start from an empty inbox and ledger.
//!
//! # Layout
//! - [`publish`]: L1 (pipelined publishes, best of several windows) and L1s (sync acks).
//! - [`apply`]: L3, the consumer's transaction in plain SQL.
//! - [`relay`]: the relay draining a backlog.
//! - [`consume`]: the consumer draining a stream.
//! - [`latency`]: commit → consumer-commit at a fixed rate, open loop.
//! - [`auth`]: login throughput against the argon2id limit, a cheap RPC's p99 under login load.

pub mod apply;
pub mod auth;
pub mod consume;
pub mod latency;
pub mod publish;
pub mod relay;

use std::time::{Duration, Instant};

use crate::cli::Params;
use crate::env::BenchEnv;
use crate::results::{Results, Timeline};

pub async fn run_all(env: &BenchEnv, params: &Params) -> anyhow::Result<Results> {
    let l1 = publish::run(env, params).await?;
    let l3 = apply::run(env, params).await?;
    let relay = relay::run(env, params).await?;
    let consumer = consume::run(env, params).await?;
    let latency = latency::run(env, params).await?;
    let auth = auth::run(env, params).await?;
    Ok(Results {
        l1,
        l3,
        relay,
        consumer,
        latency,
        auth,
    })
}

pub fn progress(message: &str) {
    eprintln!("wharf-bench: {message}");
}

/// How long `count` items may take at worst before a scenario gives up: a floor of
/// `min_rate` per second, plus a minute of slack.
pub fn deadline_for(count: u64, min_rate: u64) -> Duration {
    Duration::from_secs(60 + count / min_rate.max(1))
}

/// Polls `done()` (a count) until it reaches `target`, sampling it into a timeline, or fails
/// `within` after `start`. Returns the time from `start` to the poll that saw it done (polls
/// are 2 ms apart) and the timeline.
pub async fn wait_for_count(
    what: &str,
    start: Instant,
    target: u64,
    within: Duration,
    done: impl Fn() -> u64,
) -> anyhow::Result<(Duration, Timeline)> {
    let mut timeline = vec![(start.elapsed().as_secs_f64(), done())];
    let mut last_sample = start;
    loop {
        let count = done();
        let elapsed = start.elapsed();
        if count >= target {
            timeline.push((elapsed.as_secs_f64(), count));
            return Ok((elapsed, timeline));
        }
        if elapsed >= within {
            anyhow::bail!("timed out after {within:?} waiting for {what}: {count} of {target}");
        }
        if last_sample.elapsed() >= Duration::from_millis(250) {
            timeline.push((elapsed.as_secs_f64(), count));
            last_sample = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
