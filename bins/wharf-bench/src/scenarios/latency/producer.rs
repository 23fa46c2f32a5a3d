//! The open-loop producer: event i is due at t0 + i/R and is committed at or after that
//! instant, by one of a few concurrent producers. A late event is still sent, and keeps its
//! intended time, so the lateness is part of what is measured.
//!
//! The due times come from [`crate::pace`], on the OS timer: tokio's rounds up to the next
//! millisecond, which would add up to a millisecond to every event's measured latency.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use hdrhistogram::Histogram;
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use wharf_outbox::Waker;

use super::clock::{Clock, micros};
use crate::pace;
use crate::results::micros_histogram;
use crate::workload;

/// Transactions the producer may have open at once (its pool's size).
pub const PRODUCERS: usize = 16;

/// What the producer did.
#[derive(Debug)]
pub struct Paced {
    /// Intended send time → the producer's commit, in µs.
    pub commit: Histogram<u64>,
    /// From t0 to the last commit.
    pub elapsed: Duration,
    /// Times the pacer itself woke late: the machine, not the pipeline, stopped.
    pub stalls: pace::StallSummary,
}

/// The schedule: `total` events at `rate` per second, numbered from `first_seq`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub rate: u32,
    pub total: u64,
    pub first_seq: u64,
}

impl Schedule {
    /// The due times, from `t0`.
    fn pace(&self, t0: Instant) -> pace::Schedule {
        pace::Schedule {
            start: t0,
            interval: Duration::from_secs(1) / self.rate.max(1),
            count: self.total,
        }
    }
}

/// Runs `schedule` starting at (`t0`, `t0_wall`), one transaction per event: `enqueue` + commit,
/// telling `clock` when each commit returned.
pub async fn paced(
    pool: &PgPool,
    waker: &Waker,
    clock: &Arc<Clock>,
    schedule: Schedule,
    t0: Instant,
    t0_wall: SystemTime,
) -> anyhow::Result<Paced> {
    let permits = Arc::new(Semaphore::new(PRODUCERS));
    let commits = Arc::new(Mutex::new(micros_histogram()));
    let mut tasks = JoinSet::new();
    let mut last = t0;
    let pace = schedule.pace(t0);
    let (mut due, stalls) = pace.ticks()?;
    while let Some(index) = due.recv().await {
        let offset = pace.offset(index);
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .context("producer semaphore closed")?;
        let pool = pool.clone();
        let waker = waker.clone();
        let commits = Arc::clone(&commits);
        let clock = Arc::clone(clock);
        let intended = t0_wall + offset;
        tasks.spawn(async move {
            let mut tx = pool.begin().await.context("failed to begin")?;
            let trade = workload::trade(schedule.first_seq + index, intended);
            let event_id = wharf_outbox::enqueue(&mut tx, trade)
                .await
                .context("failed to enqueue")?;
            waker.commit(tx).await.context("failed to commit")?;
            let done = Instant::now();
            clock.produced(event_id);
            let lateness = SystemTime::now()
                .duration_since(intended)
                .unwrap_or_default();
            commits
                .lock()
                .expect("commit histogram lock")
                .saturating_record(micros(lateness));
            drop(permit);
            anyhow::Ok(done)
        });
        while let Some(finished) = tasks.try_join_next() {
            last = last.max(finished.context("a producer panicked")??);
        }
    }
    while let Some(finished) = tasks.join_next().await {
        last = last.max(finished.context("a producer panicked")??);
    }
    let commit = commits.lock().expect("commit histogram lock").clone();
    Ok(Paced {
        commit,
        elapsed: last.duration_since(t0),
        stalls: stalls.summary(),
    })
}
