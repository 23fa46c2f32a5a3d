//! Open-loop pacing on the OS timer.
//!
//! tokio's timer rounds every sleep up to its next millisecond tick, so a generator that sleeps
//! on it sends each call up to a millisecond late, and an open-loop measurement (latency from
//! the intended send time) counts that lateness as the system's. The due times come instead
//! from a thread that sleeps on the OS timer and hands each index to the async side as it
//! falls due; a runtime blocked elsewhere still reads them late, which then counts, as it
//! should.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc::UnboundedReceiver;

/// `count` calls, one every `interval` from `start`: call `index` is due at
/// `start + interval × index`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start: Instant,
    pub interval: Duration,
    pub count: u64,
}

impl Schedule {
    /// `count` calls at `interval`, the first a few milliseconds from now (time for the caller
    /// to start listening).
    pub fn from_now(interval: Duration, count: u64) -> Self {
        Self {
            start: Instant::now() + Duration::from_millis(10),
            interval,
            count,
        }
    }

    /// When call `index` is due.
    pub fn due(&self, index: u64) -> Instant {
        self.start + self.offset(index)
    }

    /// How long after `start` call `index` is due.
    pub fn offset(&self, index: u64) -> Duration {
        self.interval.mul_f64(index as f64)
    }

    /// The index of each call as it falls due, from a thread of its own; the channel closes
    /// after the last one, or the thread stops early when the receiver is dropped.
    pub fn ticks(self) -> anyhow::Result<UnboundedReceiver<u64>> {
        let (due, ticks) = tokio::sync::mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("bench-pacer".to_owned())
            .spawn(move || {
                for index in 0..self.count {
                    std::thread::sleep(self.due(index).saturating_duration_since(Instant::now()));
                    if due.send(index).is_err() {
                        return;
                    }
                }
            })
            .context("failed to start the pacer thread")?;
        Ok(ticks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_call_arrives_in_order_and_never_before_it_is_due() {
        let schedule = Schedule::from_now(Duration::from_micros(700), 50);
        let mut ticks = schedule.ticks().expect("the pacer starts");
        let mut seen = Vec::new();
        while let Some(index) = ticks.recv().await {
            assert!(
                Instant::now() >= schedule.due(index),
                "call {index} arrived before it was due"
            );
            seen.push(index);
        }
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        assert_eq!(schedule.offset(10), Duration::from_millis(7));
    }
}
