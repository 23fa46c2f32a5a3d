//! Flags, and the parameters a run resolves them to.
//!
//! `--quick` picks tiny sizes for a smoke test; any size given explicitly still wins.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use wharf_outbox::RelayConfig;

#[derive(Debug, clap::Parser)]
#[command(
    name = "wharf-bench",
    version,
    about = "Measure this machine's limits and Wharf's event path in one run; report ratios"
)]
pub struct Args {
    /// Rows in the relay backlog, events in the consumer backlog, L3 transactions and messages
    /// per L1 window [default: 100000; --quick: 1000].
    #[arg(long, value_name = "N")]
    events: Option<u64>,
    /// Events per second of the open-loop latency run [default: 1000; --quick: 200].
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<u32>,
    /// Seconds of the latency run [default: 10; --quick: 2].
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Connections of L3 and concurrent `PlaceOrder` callers of the trading scenario
    /// [default: 16].
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Apply transactions the consumer runs at once, in the drain and the latency run
    /// [default: 4]. Each takes every event that has arrived (up to its `max_batch`), so a
    /// few slots batch more than many would, and spend less CPU per event.
    #[arg(long, value_name = "N")]
    consumer_concurrency: Option<usize>,
    /// Where bench.json and bench.svg (and bench.png, with ImageMagick) go.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    out: PathBuf,
    /// Tiny sizes, for a smoke test (seconds, not minutes).
    #[arg(long)]
    quick: bool,
    /// Run only these scenarios (comma-separated: l1, l3, relay, consumer, latency, auth,
    /// trading, social, isolation, gateway) and print
    /// their figures, without a report: for iterating on one stage. Ratios need a full run.
    #[arg(long, value_name = "SCENARIOS", value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Relay rows claimed and published per batch [default: the relay's default].
    #[arg(long, value_name = "N")]
    relay_batch_size: Option<usize>,
    /// Relay drain workers [default: the relay's default].
    #[arg(long, value_name = "N")]
    relay_workers: Option<usize>,
    /// PostgreSQL server to create the bench database on (needs CREATEDB).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://wharf@127.0.0.1:15432/wharf",
        hide_env_values = true
    )]
    database_url: String,
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:14222")]
    nats_url: String,
}

/// A measurement that `--only` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    L1,
    L3,
    Relay,
    Consumer,
    Latency,
    Auth,
    Trading,
    Social,
    /// Order and login latency with social running, then stopped.
    Isolation,
    /// A cheap RPC through the gateway against direct; notification fan-out.
    Gateway,
}

/// Everything a run is parameterised by; recorded in `bench.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub events: u64,
    pub rate: u32,
    pub duration_s: f64,
    pub concurrency: usize,
    pub consumer_concurrency: usize,
    /// In-flight windows L1 tries; the best is the limit.
    pub windows: Vec<usize>,
    /// Sequential publishes timed for L1s.
    pub sync_samples: u64,
    pub relay: RelayConfig,
    pub quick: bool,
    /// Empty for a full run.
    pub only: Vec<Scenario>,
    pub out: PathBuf,
    #[serde(skip)]
    pub database_url: String,
    #[serde(skip)]
    pub nats_url: String,
}

impl Params {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_s)
    }

    /// Events of the latency run.
    pub fn latency_events(&self) -> u64 {
        // Rounded, not truncated: 1000/s for 10 s is 10,000 events.
        (f64::from(self.rate) * self.duration_s).round().max(1.0) as u64
    }
}

impl Args {
    pub fn resolve(self) -> Params {
        let defaults = RelayConfig::default();
        let relay = RelayConfig {
            batch_size: self.relay_batch_size.unwrap_or(defaults.batch_size).max(1),
            workers: self.relay_workers.unwrap_or(defaults.workers).max(1),
            ..defaults
        };
        let (events, rate, duration, samples) = if self.quick {
            (1_000, 200, 2.0, 100)
        } else {
            (100_000, 1_000, 10.0, 2_000)
        };
        Params {
            events: self.events.unwrap_or(events).max(1),
            rate: self.rate.unwrap_or(rate).max(1),
            duration_s: self.duration.unwrap_or(duration).max(0.1),
            concurrency: self.concurrency.unwrap_or(16).max(1),
            consumer_concurrency: self.consumer_concurrency.unwrap_or(4).max(1),
            windows: vec![64, 256, 1024],
            sync_samples: samples,
            relay,
            quick: self.quick,
            only: self.only,
            out: self.out,
            database_url: self.database_url,
            nats_url: self.nats_url,
        }
    }
}
