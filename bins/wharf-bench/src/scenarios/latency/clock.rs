//! The latency run's clock: the handler reports each event's intended send time (read from the
//! event inside the consumer's transaction), the after-commit hook turns it into a latency.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use wharf_events::EventContext;

use crate::results::micros_histogram;
use crate::workload::Observer;

/// Times events from their intended send time to the consumer's commit.
#[derive(Debug)]
pub struct Clock {
    /// Events sent before this instant (the warm-up) are applied but not recorded.
    origin: Mutex<SystemTime>,
    /// Intended send times of events whose transaction is open, and when their handler ran,
    /// by event id.
    open: Mutex<HashMap<String, (SystemTime, SystemTime)>>,
    /// When the producer's commit returned, by event id.
    produced: Mutex<HashMap<String, SystemTime>>,
    /// Intended send time → consumer commit, µs: the figure with targets.
    from_intended: Mutex<Histogram<u64>>,
    /// Producer commit → consumer commit, µs: the relay and the consumer alone.
    from_commit: Mutex<Histogram<u64>>,
    /// Producer commit → the consumer's handler, µs: the relay, JetStream and the delivery.
    to_handler: Mutex<Histogram<u64>>,
    /// The consumer's handler → its commit, µs: the rest of the apply transaction.
    handler_to_commit: Mutex<Histogram<u64>>,
    recorded: AtomicU64,
    produced_total: AtomicU64,
}

impl Clock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Mutex::new(SystemTime::now() + Duration::from_secs(24 * 3600)),
            open: Mutex::new(HashMap::new()),
            produced: Mutex::new(HashMap::new()),
            from_intended: Mutex::new(micros_histogram()),
            from_commit: Mutex::new(micros_histogram()),
            to_handler: Mutex::new(micros_histogram()),
            handler_to_commit: Mutex::new(micros_histogram()),
            recorded: AtomicU64::new(0),
            produced_total: AtomicU64::new(0),
        })
    }

    /// Starts recording events intended at or after `origin`.
    pub fn start_at(&self, origin: SystemTime) {
        *self.origin.lock().expect("clock lock") = origin;
    }

    /// The producer's commit of `event_id` returned.
    pub fn produced(&self, event_id: String) {
        let now = SystemTime::now();
        self.produced
            .lock()
            .expect("clock lock")
            .insert(event_id, now);
        self.produced_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Commits the producer has made, warm-up included.
    pub fn produced_total(&self) -> u64 {
        self.produced_total.load(Ordering::Relaxed)
    }

    /// The consumer committed the event of `ctx`: record its latency.
    pub fn committed(&self, ctx: &EventContext) {
        let now = SystemTime::now();
        let event_id = &ctx.envelope.event_id;
        let produced = self.produced.lock().expect("clock lock").remove(event_id);
        let Some((intended, handled)) = self.open.lock().expect("clock lock").remove(event_id)
        else {
            return;
        };
        if intended < *self.origin.lock().expect("clock lock") {
            return;
        }
        let since = |then: SystemTime| micros(now.duration_since(then).unwrap_or_default());
        self.from_intended
            .lock()
            .expect("clock lock")
            .saturating_record(since(intended));
        self.handler_to_commit
            .lock()
            .expect("clock lock")
            .saturating_record(since(handled));
        // Absent only if the consumer won the race with the producer's own bookkeeping.
        if let Some(produced) = produced {
            self.from_commit
                .lock()
                .expect("clock lock")
                .saturating_record(since(produced));
            self.to_handler
                .lock()
                .expect("clock lock")
                .saturating_record(micros(handled.duration_since(produced).unwrap_or_default()));
        }
        self.recorded.fetch_add(1, Ordering::Relaxed);
    }

    pub fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    /// Intended send time → consumer commit, µs.
    pub fn end_to_end(&self) -> Histogram<u64> {
        self.from_intended.lock().expect("clock lock").clone()
    }

    /// Producer commit → consumer commit, µs.
    pub fn commit_to_consumer(&self) -> Histogram<u64> {
        self.from_commit.lock().expect("clock lock").clone()
    }

    /// Producer commit → the consumer's handler, µs.
    pub fn commit_to_handler(&self) -> Histogram<u64> {
        self.to_handler.lock().expect("clock lock").clone()
    }

    /// The consumer's handler → its commit, µs.
    pub fn handler_to_commit(&self) -> Histogram<u64> {
        self.handler_to_commit.lock().expect("clock lock").clone()
    }
}

/// The handler's side: remembers the intended time until the commit.
#[derive(Debug, Clone)]
pub struct ClockObserver(pub Arc<Clock>);

impl Observer for ClockObserver {
    fn applying(&self, event_id: &str, intended: SystemTime) {
        self.0
            .open
            .lock()
            .expect("clock lock")
            .insert(event_id.to_owned(), (intended, SystemTime::now()));
    }
}

pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
