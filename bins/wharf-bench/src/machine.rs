//! What the run ran on, for `bench.json`: ratios travel between machines, but only with the
//! machine they were measured on. Best effort: an unknown field is recorded as unknown.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::env::BenchEnv;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub os: String,
    pub kernel: String,
    pub nats_version: String,
    pub postgres_version: String,
    /// The server settings that bound commit rate and latency.
    pub postgres_settings: BTreeMap<String, String>,
    /// The toolchain pinned by `rust-toolchain.toml` when this binary was built.
    pub rust_toolchain: String,
    pub build_profile: &'static str,
    pub wharf_bench_version: &'static str,
    /// UTC, from the database server's clock.
    pub measured_at: String,
}

const UNKNOWN: &str = "unknown";

pub async fn describe(env: &BenchEnv) -> Machine {
    let (postgres_version, postgres_settings, measured_at) =
        postgres(env).await.unwrap_or_else(|err| {
            eprintln!("wharf-bench: could not read the PostgreSQL settings: {err:#}");
            (UNKNOWN.to_owned(), BTreeMap::new(), UNKNOWN.to_owned())
        });
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, usize::from),
        cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| UNKNOWN.to_owned()),
        memory_gib: field(&meminfo, "MemTotal")
            .and_then(|kb| kb.trim_end_matches(" kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        os: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| UNKNOWN.to_owned(), |kernel| kernel.trim().to_owned()),
        nats_version: env.client.server_info().version,
        postgres_version,
        postgres_settings,
        rust_toolchain: toolchain(),
        build_profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        wharf_bench_version: env!("CARGO_PKG_VERSION"),
        measured_at,
    }
}

type PgFacts = (String, BTreeMap<String, String>, String);

async fn postgres(env: &BenchEnv) -> anyhow::Result<PgFacts> {
    let mut admin = env.admin().await?;
    let (version, now): (String, String) = sqlx::query_as(
        "SELECT current_setting('server_version'), \
         to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
    )
    .fetch_one(&mut admin)
    .await?;
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, current_setting(name) FROM pg_settings WHERE name IN \
         ('synchronous_commit', 'fsync', 'wal_sync_method', 'shared_buffers', 'max_connections', \
          'commit_delay', 'full_page_writes')",
    )
    .fetch_all(&mut admin)
    .await?;
    Ok((version, settings.into_iter().collect(), now))
}

/// `key : value` from a /proc file.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim() == key)
        .map(|(_, value)| value.trim().to_owned())
}

fn toolchain() -> String {
    const PINNED: &str = include_str!("../../../rust-toolchain.toml");
    PINNED
        .lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim() == "channel")
        .map_or_else(
            || UNKNOWN.to_owned(),
            |(_, value)| value.trim().trim_matches('"').to_owned(),
        )
}
