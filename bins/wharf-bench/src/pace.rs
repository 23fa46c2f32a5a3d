//! Open-loop pacing on the OS timer.
//!
//! tokio's timer rounds every sleep up to its next millisecond tick, so a generator that sleeps
//! on it sends each call up to a millisecond late, and an open-loop measurement (latency from
//! the intended send time) counts that lateness as the system's. The due times come instead
//! from a thread that sleeps on the OS timer and hands each index to the async side as it
//! falls due; a runtime blocked elsewhere still reads them late, which then counts, as it
//! should.
//!
//! The pacer thread is also a probe of the machine: it does nothing but sleep until the next
//! due time, so when it wakes late, every thread on the machine could have. [`Stalls`] records
//! those wake-ups, so a report can tell a slow pipeline from a machine that stopped running it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

/// A pacer wake-up this late (past its due time) counts as a stall of the machine.
pub const STALL: Duration = Duration::from_millis(2);

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
        Ok(self.observed_ticks()?.0)
    }

    /// [`Self::ticks`], and the stalls the pacer saw while it ran.
    pub fn observed_ticks(self) -> anyhow::Result<(UnboundedReceiver<u64>, Arc<Stalls>)> {
        let (due, ticks) = tokio::sync::mpsc::unbounded_channel();
        let stalls = Arc::new(Stalls::default());
        let seen = Arc::clone(&stalls);
        std::thread::Builder::new()
            .name("bench-pacer".to_owned())
            .spawn(move || {
                for index in 0..self.count {
                    let at = self.due(index);
                    let wait = at.saturating_duration_since(Instant::now());
                    if !wait.is_zero() {
                        std::thread::sleep(wait);
                        seen.woke(Instant::now().saturating_duration_since(at));
                    }
                    if due.send(index).is_err() {
                        return;
                    }
                }
            })
            .context("failed to start the pacer thread")?;
        Ok((ticks, stalls))
    }
}

/// Times the pacer woke [`STALL`] or more after it asked to.
#[derive(Debug, Default)]
pub struct Stalls {
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    count: u64,
    longest: Duration,
    total: Duration,
}

impl Stalls {
    fn woke(&self, late: Duration) {
        if late >= STALL {
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            seen.count += 1;
            seen.longest = seen.longest.max(late);
            seen.total += late;
        }
    }

    pub fn summary(&self, over: Duration) -> StallSummary {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ms = |duration: Duration| duration.as_secs_f64() * 1_000.0;
        StallSummary {
            threshold_ms: ms(STALL),
            count: seen.count,
            longest_ms: ms(seen.longest),
            total_ms: ms(seen.total),
            seconds: over.as_secs_f64(),
            per_second: seen.count as f64 / over.as_secs_f64().max(f64::MIN_POSITIVE),
        }
    }
}

/// How often, and for how long, the machine stopped running the pacer.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StallSummary {
    /// A wake-up at least this late counts.
    pub threshold_ms: f64,
    pub count: u64,
    pub longest_ms: f64,
    /// The late wake-ups' lateness, added up.
    pub total_ms: f64,
    /// How long the pacer was watched.
    pub seconds: f64,
    pub per_second: f64,
}

impl StallSummary {
    /// Several runs' stalls as one: counts and time added up, the longest of all.
    pub fn combined(parts: &[Self]) -> Self {
        let seconds: f64 = parts.iter().map(|part| part.seconds).sum();
        let count = parts.iter().map(|part| part.count).sum();
        Self {
            threshold_ms: STALL.as_secs_f64() * 1_000.0,
            count,
            longest_ms: parts.iter().map(|part| part.longest_ms).fold(0.0, f64::max),
            total_ms: parts.iter().map(|part| part.total_ms).sum(),
            seconds,
            per_second: count as f64 / seconds.max(f64::MIN_POSITIVE),
        }
    }
}

/// `12 (1.2/s, ≥ 2 ms late), longest 9.50 ms`: the form every report line uses.
impl std::fmt::Display for StallSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({:.1}/s, ≥ {:.0} ms late), longest {:.2} ms",
            self.count, self.per_second, self.threshold_ms, self.longest_ms
        )
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

    #[test]
    fn only_wake_ups_past_the_threshold_are_stalls() {
        let stalls = Stalls::default();
        stalls.woke(Duration::from_micros(300));
        stalls.woke(STALL - Duration::from_micros(1));
        stalls.woke(Duration::from_millis(3));
        stalls.woke(Duration::from_millis(9));
        let summary = stalls.summary(Duration::from_secs(2));
        assert_eq!(summary.count, 2);
        assert!((summary.longest_ms - 9.0).abs() < 1e-9);
        assert!((summary.total_ms - 12.0).abs() < 1e-9);
        assert!((summary.per_second - 1.0).abs() < 1e-9);

        let quiet = Stalls::default().summary(Duration::from_secs(2));
        let both = StallSummary::combined(&[summary, quiet]);
        assert_eq!(both.count, 2);
        assert!((both.seconds - 4.0).abs() < 1e-9);
        assert!((both.per_second - 0.5).abs() < 1e-9);
        assert!((both.longest_ms - 9.0).abs() < 1e-9);
        assert_eq!(both.to_string(), "2 (0.5/s, ≥ 2 ms late), longest 9.00 ms");
    }
}
