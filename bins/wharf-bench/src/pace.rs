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
//! Alongside, it reads the CPU time the hypervisor took from this VM meanwhile (steal, from
//! `/proc/stat`): a busy host shows there even when no single wake-up is late.

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
    /// after the last one, or the thread stops early when the receiver is dropped. With it,
    /// the stalls the pacer sees while it runs.
    pub fn ticks(self) -> anyhow::Result<(UnboundedReceiver<u64>, Arc<Stalls>)> {
        let (due, ticks) = tokio::sync::mpsc::unbounded_channel();
        let stalls = Arc::new(Stalls::starting_now());
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

/// Times the pacer woke [`STALL`] or more after it asked to, and the machine's CPU time, from
/// when it started.
#[derive(Debug)]
pub struct Stalls {
    seen: Mutex<Seen>,
    started: Instant,
    cpu_at_start: Option<CpuTime>,
}

#[derive(Debug, Default)]
struct Seen {
    count: u64,
    longest: Duration,
    total: Duration,
}

impl Stalls {
    fn starting_now() -> Self {
        Self {
            seen: Mutex::default(),
            started: Instant::now(),
            cpu_at_start: CpuTime::now(),
        }
    }

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

    /// What the pacer saw from its start until now.
    pub fn summary(&self) -> StallSummary {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ms = |duration: Duration| duration.as_secs_f64() * 1_000.0;
        let cpu = self
            .cpu_at_start
            .zip(CpuTime::now())
            .map(|(start, end)| end.since(start));
        StallSummary::new(
            seen.count,
            ms(seen.longest),
            ms(seen.total),
            self.started.elapsed().as_secs_f64(),
            cpu,
        )
    }
}

/// The whole machine's CPU time from the `cpu` line of `/proc/stat`, in clock ticks: all of
/// it, the part spent running something (user, system, interrupts), and the part the
/// hypervisor ran something else while this VM wanted the CPU (steal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    pub all: u64,
    pub busy: u64,
    pub stolen: u64,
}

impl CpuTime {
    /// Now; `None` where `/proc/stat` cannot be read (not Linux).
    fn now() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// `cpu  user nice system idle iowait irq softirq steal guest guest_nice`; guest time is
    /// already inside user time, so it is not added again.
    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|line| line.starts_with("cpu "))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        (fields.len() == 8).then(|| {
            let all = fields.iter().sum::<u64>();
            let (idle, iowait, stolen) = (fields[3], fields[4], fields[7]);
            Self {
                all,
                busy: all - idle - iowait - stolen,
                stolen,
            }
        })
    }

    fn since(self, start: Self) -> Self {
        Self {
            all: self.all.saturating_sub(start.all),
            busy: self.busy.saturating_sub(start.busy),
            stolen: self.stolen.saturating_sub(start.stolen),
        }
    }

    fn steal_percent(self) -> Option<f64> {
        (self.all > 0).then(|| self.stolen as f64 * 100.0 / self.all as f64)
    }

    fn busy_percent(self) -> Option<f64> {
        (self.all > 0).then(|| self.busy as f64 * 100.0 / self.all as f64)
    }
}

impl std::iter::Sum for CpuTime {
    fn sum<I: Iterator<Item = Self>>(parts: I) -> Self {
        parts.fold(Self::default(), |sum, part| Self {
            all: sum.all + part.all,
            busy: sum.busy + part.busy,
            stolen: sum.stolen + part.stolen,
        })
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
    /// Of all the machine's CPU time meanwhile, the share spent running something (a machine
    /// near 100 % queues every request), and the share the hypervisor gave to someone else
    /// (steal); `None` where they cannot be read.
    pub cpu_busy_percent: Option<f64>,
    pub host_steal_percent: Option<f64>,
    #[serde(skip)]
    pub cpu: Option<CpuTime>,
}

impl StallSummary {
    /// The rate and the CPU shares follow from the counts, the time watched and the CPU time.
    fn new(count: u64, longest_ms: f64, total_ms: f64, seconds: f64, cpu: Option<CpuTime>) -> Self {
        Self {
            threshold_ms: STALL.as_secs_f64() * 1_000.0,
            count,
            longest_ms,
            total_ms,
            seconds,
            per_second: count as f64 / seconds.max(f64::MIN_POSITIVE),
            cpu_busy_percent: cpu.and_then(CpuTime::busy_percent),
            host_steal_percent: cpu.and_then(CpuTime::steal_percent),
            cpu,
        }
    }

    /// Several runs' stalls as one: counts, time and CPU time added up, the longest of all.
    /// The CPU shares are unknown when any part's are.
    pub fn combined(parts: &[Self]) -> Self {
        Self::new(
            parts.iter().map(|part| part.count).sum(),
            parts.iter().map(|part| part.longest_ms).fold(0.0, f64::max),
            parts.iter().map(|part| part.total_ms).sum(),
            parts.iter().map(|part| part.seconds).sum(),
            parts.iter().map(|part| part.cpu).sum(),
        )
    }
}

/// `12 (1.2/s, ≥ 2 ms late), longest 9.50 ms; CPU busy 71 %, host steal 3.1 %`: the form
/// every report line uses.
impl std::fmt::Display for StallSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({:.1}/s, ≥ {:.0} ms late), longest {:.2} ms",
            self.count, self.per_second, self.threshold_ms, self.longest_ms
        )?;
        match (self.cpu_busy_percent, self.host_steal_percent) {
            (Some(busy), Some(steal)) => {
                write!(f, "; CPU busy {busy:.0} %, host steal {steal:.1} %")
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_call_arrives_in_order_and_never_before_it_is_due() {
        let schedule = Schedule::from_now(Duration::from_micros(700), 50);
        let (mut ticks, _) = schedule.ticks().expect("the pacer starts");
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
        let stalls = Stalls::starting_now();
        stalls.woke(Duration::from_micros(300));
        stalls.woke(STALL - Duration::from_micros(1));
        stalls.woke(Duration::from_millis(3));
        stalls.woke(Duration::from_millis(9));
        let seen = stalls.summary();
        assert_eq!(seen.count, 2);
        assert!((seen.longest_ms - 9.0).abs() < 1e-9);
        assert!((seen.total_ms - 12.0).abs() < 1e-9);
        assert!(
            seen.seconds > 0.0 && seen.seconds < 60.0,
            "watched since it started"
        );

        // Over two seconds each, with the CPU time unknown:
        let summary = StallSummary::new(seen.count, seen.longest_ms, seen.total_ms, 2.0, None);
        assert!((summary.per_second - 1.0).abs() < 1e-9);
        let quiet = StallSummary::new(0, 0.0, 0.0, 2.0, None);
        let both = StallSummary::combined(&[summary, quiet]);
        assert_eq!(both.count, 2);
        assert!((both.seconds - 4.0).abs() < 1e-9);
        assert!((both.per_second - 0.5).abs() < 1e-9);
        assert!((both.longest_ms - 9.0).abs() < 1e-9);
        assert_eq!(both.to_string(), "2 (0.5/s, ≥ 2 ms late), longest 9.00 ms");
    }

    #[test]
    fn steal_is_the_stolen_share_of_all_cpu_time_and_adds_up_across_phases() {
        let stat = "cpu  100 5 50 800 10 0 5 30 7 0\ncpu0 50 2 25 400 5 0 2 15 3 0\n";
        let start = CpuTime::parse(stat).expect("a cpu line parses");
        assert_eq!(
            start,
            CpuTime {
                all: 1_000,
                busy: 160,
                stolen: 30
            }
        );
        let end = CpuTime::parse("cpu  300 5 150 1200 10 0 5 130 9 0\n").expect("parses");
        let phase = end.since(start);
        assert_eq!(
            phase,
            CpuTime {
                all: 800,
                busy: 300,
                stolen: 100
            }
        );
        assert!((phase.steal_percent().expect("time passed") - 12.5).abs() < 1e-9);
        assert!((phase.busy_percent().expect("time passed") - 37.5).abs() < 1e-9);
        assert_eq!(CpuTime::default().steal_percent(), None);
        assert_eq!(CpuTime::parse("intr 1 2 3\n"), None);
        assert_eq!(CpuTime::parse("cpu  1 2 x 4 5 6 7 8\n"), None);

        let summary = |cpu| StallSummary::new(0, 0.0, 0.0, 1.0, cpu);
        let busy = summary(Some(CpuTime {
            all: 200,
            busy: 150,
            stolen: 50,
        }));
        let quiet = summary(Some(CpuTime {
            all: 200,
            busy: 10,
            stolen: 0,
        }));
        let both = StallSummary::combined(&[busy, quiet]);
        assert!((both.host_steal_percent.expect("both known") - 12.5).abs() < 1e-9);
        assert!((both.cpu_busy_percent.expect("both known") - 40.0).abs() < 1e-9);
        assert!(
            both.to_string()
                .ends_with("; CPU busy 40 %, host steal 12.5 %")
        );
        // One phase without the figure: the whole is unknown, not a share of part of it.
        assert_eq!(
            StallSummary::combined(&[busy, summary(None)]).host_steal_percent,
            None
        );
    }

    #[test]
    fn this_machine_reports_its_cpu_time() {
        if cfg!(target_os = "linux") {
            let cpu = CpuTime::now().expect("/proc/stat has a cpu line");
            assert!(cpu.all > 0 && cpu.busy + cpu.stolen <= cpu.all);
        }
    }
}
