//! `wharf-bench`: measures this machine's limits and Wharf's event path in the same run, and
//! reports the system as ratios of the limits (ARCHITECTURE §9).
//!
//! Absolute numbers say more about the machine than about the code; a ratio to a limit measured
//! minutes apart on the same machine does not. So every run measures both:
//!
//! | limit | system | target |
//! |---|---|---|
//! | L1: raw JetStream publish, pipelined acks, relay's payload and headers | relay drain of a backlog | ≥ 0.7 × L1 |
//! | L3: the consumer's apply transaction in plain SQL | consumer drain of a stream | ≥ 0.7 × L3 |
//! | — | commit → consumer-commit latency, open loop at a fixed rate | p50 ≤ 5 ms, p99 ≤ 15 ms |
//!
//! Everything runs in a fresh database and JetStream namespaces of its own, dropped at the end.
//! Output: a table on stdout, `bench.json` (every figure, the parameters, the machine) and
//! `bench.svg` (ratios against targets, latency percentiles) in `--out`.
//!
//! # Layout
//! - [`cli`]: flags and the resolved [`cli::Params`].
//! - [`env`]: the fresh database, NATS connection, namespaces, cleanup.
//! - [`workload`]: the events and the ledger (shared by L3 and the consumer's handler).
//! - [`scenarios`]: one module per measurement.
//! - [`results`], [`report`], [`svg`]: figures, the table and JSON, the plot.
//! - [`machine`]: what the run ran on.
//! - [`pace`]: open-loop due times on the OS timer.
#![forbid(unsafe_code)]

mod cli;
mod env;
mod machine;
mod pace;
mod report;
mod results;
mod scenarios;
mod svg;
mod workload;

use anyhow::Context;
use clap::Parser;
use wharf_runtime::telemetry::{self, TelemetryConfig};

/// mimalloc: a service's allocations cross threads (a request is decoded on one worker and
/// freed on another), where glibc's per-arena locks cost more than the work; `wharf-bench`
/// measures with the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let params = cli::Args::parse().resolve();
    let _telemetry = telemetry::init(
        &TelemetryConfig {
            log_filter: "warn".to_owned(),
            ..TelemetryConfig::default()
        },
        "wharf-bench",
    )
    .context("failed to initialise logging")?;

    let bench = env::BenchEnv::create(&params.database_url, &params.nats_url).await?;
    eprintln!(
        "wharf-bench: database {}, namespace prefix {}",
        bench.database_name(),
        bench.tag()
    );
    if !params.only.is_empty() {
        let outcome = until_signalled(Box::pin(scenarios::run_some(&bench, &params))).await;
        bench.cleanup().await;
        return outcome;
    }
    let outcome = until_signalled(Box::pin(scenarios::run_all(&bench, &params))).await;
    let machine = machine::describe(&bench).await;
    bench.cleanup().await;
    let results = outcome?;

    let report = report::Report::new(params, machine, results);
    println!("{}", report.table());
    let written = report.write(&report.params.out).with_context(|| {
        format!(
            "failed to write the report to {}",
            report.params.out.display()
        )
    })?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Runs `run` until it ends or the first SIGINT or SIGTERM, so an interrupted run still deletes
/// its database and streams (a second signal exits at once, without them).
async fn until_signalled<T>(run: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::select! {
        outcome = run => outcome,
        () = wharf_runtime::shutdown::signal() => Err(anyhow::anyhow!("interrupted")),
    }
}
