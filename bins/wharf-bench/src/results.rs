//! The figures a run produces, as they appear in `bench.json`.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use wharf_outbox::RelayConfig;

use crate::workload::per_second;

/// `count` things in `seconds`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Throughput {
    pub count: u64,
    pub seconds: f64,
    pub per_second: f64,
}

impl Throughput {
    pub fn new(count: u64, elapsed: Duration) -> Self {
        Self {
            count,
            seconds: elapsed.as_secs_f64(),
            per_second: per_second(count, elapsed),
        }
    }
}

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// From a histogram of microseconds.
    pub fn from_micros(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1_000.0;
        Self {
            count: histogram.len(),
            mean_ms: histogram.mean() / 1_000.0,
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// A histogram of microseconds from 1 µs to 10 minutes, 3 significant digits.
pub fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Progress of a drain: `(seconds since start, rows done)`, sampled while it runs.
pub type Timeline = Vec<(f64, u64)>;

/// L1 and L1s.
#[derive(Debug, Clone, Serialize)]
pub struct PublishLimit {
    /// Each in-flight window tried, in order.
    pub windows: Vec<WindowRun>,
    pub best_window: usize,
    pub best: Throughput,
    /// Payload bytes of one message, and its header bytes as sent.
    pub payload_bytes: usize,
    pub header_bytes: usize,
    /// L1s: one publish at a time, each ack awaited.
    pub sync_ack: Percentiles,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct WindowRun {
    pub window: usize,
    pub throughput: Throughput,
}

/// L3: the consumer's transaction in plain SQL.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyLimit {
    pub concurrency: usize,
    pub throughput: Throughput,
}

#[derive(Debug, Clone, Serialize)]
pub struct RelayDrain {
    pub config: RelayConfig,
    /// Untimed: filling the outbox through `enqueue`, in transactions of `fill_tx_rows` rows.
    pub fill: Throughput,
    pub fill_tx_rows: u64,
    pub drain: Throughput,
    pub batches: u64,
    pub duplicates: u64,
    pub failures: u64,
    pub stream_messages: u64,
    pub timeline: Timeline,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsumerDrain {
    pub concurrency: usize,
    pub pull_batch: usize,
    /// Untimed: the backlog published beforehand.
    pub prepublish: Throughput,
    pub drain: Throughput,
    /// Apply transactions the consumer committed (several events share one when they wait).
    pub transactions: u64,
    pub duplicates: u64,
    pub redeliveries: u64,
    pub retries: u64,
    pub ledger_rows: i64,
    pub timeline: Timeline,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyRun {
    pub target_rate: u32,
    pub duration_s: f64,
    pub events: u64,
    /// Events committed ÷ time from the first intended send to the last commit.
    pub achieved_rate: f64,
    /// Intended send time → the consumer's commit (the figure with targets).
    pub end_to_end: Percentiles,
    /// Intended send time → the producer's commit: the part before the relay sees the row,
    /// including the harness's own timer lateness.
    pub producer_commit: Percentiles,
    /// The producer's commit returned → the consumer's commit: the relay and consumer alone.
    pub commit_to_consumer: Percentiles,
    /// Of which: the producer's commit → the consumer's handler (relay, JetStream, delivery)…
    pub commit_to_handler: Percentiles,
    /// …and the handler → the consumer's commit (the rest of the apply transaction).
    pub handler_to_commit: Percentiles,
    pub relay: RelayConfig,
    pub consumer_concurrency: usize,
    /// Relay batches and consumer apply transactions during the run (warm-up included): the
    /// events per round trip each stage managed at this rate.
    pub relay_batches: u64,
    /// Relay claims, the empty ones included.
    pub relay_claims: u64,
    pub consumer_transactions: u64,
    /// Times the machine stopped running the producer's pacer thread (see `pace`): a p99
    /// near the longest stall was set by the machine.
    pub stalls: crate::pace::StallSummary,
    /// Cumulative counts every 100 ms from t0 (warm-up included).
    pub stages: Vec<StageSample>,
}

/// One sample of the latency run's pipeline.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StageSample {
    pub t_s: f64,
    /// Events due by now (the schedule), warm-up included.
    pub due: u64,
    /// Producer commits returned.
    pub committed: u64,
    /// Rows the relay published, acknowledged and deleted.
    pub published: u64,
    /// Events the consumer applied and committed.
    pub applied: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub l1: PublishLimit,
    pub l3: ApplyLimit,
    pub relay: RelayDrain,
    pub consumer: ConsumerDrain,
    pub latency: LatencyRun,
    pub auth: crate::scenarios::auth::AuthRun,
    pub trading: crate::scenarios::trading::TradingRun,
    pub social: crate::scenarios::social::SocialRun,
    pub isolation: crate::scenarios::isolation::IsolationRun,
    pub gateway: crate::scenarios::gateway::GatewayRun,
}
