//! The verdict: ratios against the targets, as a table, `bench.json` and the plot.

pub(crate) mod table;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use serde::Serialize;

use crate::cli::Params;
use crate::machine::Machine;
use crate::results::Results;
use crate::scenarios::gateway::{NOTIFY_P99_TARGET_MS, RPC_RATIO_TARGET};
use crate::scenarios::isolation::{self, Compared};

/// Relay drain ≥ this × L1; consumer drain ≥ this × L3.
pub const RATIO_TARGET: f64 = 0.7;
/// Commit → consumer-commit latency bounds at the target rate.
pub const P50_TARGET_MS: f64 = 5.0;
pub const P99_TARGET_MS: f64 = 15.0;
/// Login throughput ≥ this × the argon2id verify limit (all cores).
pub const LOGIN_RATIO_TARGET: f64 = 0.85;
/// A cheap RPC's p99 while logins saturate the CPU ≤ this × its p99 alone.
pub const CHEAP_P99_FACTOR: f64 = 2.0;
/// `PlaceOrder` over gRPC ≥ this × the same transaction called directly.
pub const PLACE_ORDER_RATIO_TARGET: f64 = 0.6;
/// Order commit → ledger entry p99 at half the `PlaceOrder` rate.
pub const LEDGER_P99_TARGET_MS: f64 = 20.0;
/// `PlaceOrder` and `Login` p99 with social stopped ≤ this × their p99 with social running.
pub const ISOLATION_P99_FACTOR: f64 = isolation::BOUND;

/// One target of the issue, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    /// The limit the value is divided by, for ratio targets.
    pub limit: Option<f64>,
    pub ratio: Option<f64>,
    pub target: String,
    pub pass: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub params: Params,
    pub machine: Machine,
    pub results: Results,
    pub checks: Vec<Check>,
    pub passed: bool,
}

impl Report {
    pub fn new(params: Params, machine: Machine, results: Results) -> Self {
        let checks = checks(&results);
        let passed = checks.iter().all(|check| check.pass);
        Self {
            params,
            machine,
            results,
            checks,
            passed,
        }
    }

    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|check| check.name == name)
    }

    /// Writes bench.json and bench.svg, and bench.png when ImageMagick is there.
    pub fn write(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).context("failed to create the output folder")?;
        let json = dir.join("bench.json");
        let text = serde_json::to_string_pretty(self).context("failed to encode the report")?;
        std::fs::write(&json, text + "\n").context("failed to write bench.json")?;
        let svg = dir.join("bench.svg");
        std::fs::write(&svg, crate::svg::render(self)).context("failed to write bench.svg")?;
        let mut written = vec![json, svg.clone()];
        let png = dir.join("bench.png");
        let converted = Command::new("convert")
            .args(["-density", "144"])
            .arg(&svg)
            .arg(&png)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if converted.is_ok_and(|status| status.success()) && png.exists() {
            written.push(png);
        }
        Ok(written)
    }

    pub fn table(&self) -> String {
        table::render(self)
    }
}

/// p99 with social stopped against p99 with social running, target ≤ the scenario's bound.
fn isolation_check(name: &'static str, compared: &Compared) -> Check {
    Check {
        name,
        value: compared.social_stopped.p99_ms,
        unit: "ms",
        limit: Some(compared.social_running.p99_ms),
        ratio: Some(compared.p99_ratio),
        target: format!("≤ {ISOLATION_P99_FACTOR:.1}×, no more failures"),
        pass: compared.pass(),
    }
}

fn checks(results: &Results) -> Vec<Check> {
    let ratio_check = |name, value: f64, unit, limit: f64| {
        let ratio = value / limit.max(f64::MIN_POSITIVE);
        Check {
            name,
            value,
            unit,
            limit: Some(limit),
            ratio: Some(ratio),
            target: format!("≥ {RATIO_TARGET:.2}"),
            pass: ratio >= RATIO_TARGET,
        }
    };
    let latency_check = |name, value: f64, bound: f64| Check {
        name,
        value,
        unit: "ms",
        limit: None,
        ratio: None,
        target: format!("≤ {bound:.0} ms"),
        pass: value <= bound,
    };
    let latency = &results.latency.end_to_end;
    vec![
        ratio_check(
            "relay_drain",
            results.relay.drain.per_second,
            "rows/s",
            results.l1.best.per_second,
        ),
        ratio_check(
            "consumer_drain",
            results.consumer.drain.per_second,
            "events/s",
            results.l3.throughput.per_second,
        ),
        latency_check("latency_p50", latency.p50_ms, P50_TARGET_MS),
        latency_check("latency_p99", latency.p99_ms, P99_TARGET_MS),
        {
            let auth = &results.auth;
            let limit = auth.verify_limit.per_second;
            let ratio = auth.login.per_second / limit.max(f64::MIN_POSITIVE);
            Check {
                name: "login_throughput",
                value: auth.login.per_second,
                unit: "logins/s",
                limit: Some(limit),
                ratio: Some(ratio),
                target: format!("≥ {LOGIN_RATIO_TARGET:.2}"),
                pass: ratio >= LOGIN_RATIO_TARGET,
            }
        },
        {
            let trading = &results.trading;
            let limit = trading.direct.per_second;
            let ratio = trading.grpc.per_second / limit.max(f64::MIN_POSITIVE);
            Check {
                name: "place_order",
                value: trading.grpc.per_second,
                unit: "orders/s",
                limit: Some(limit),
                ratio: Some(ratio),
                target: format!("≥ {PLACE_ORDER_RATIO_TARGET:.2}"),
                pass: ratio >= PLACE_ORDER_RATIO_TARGET,
            }
        },
        latency_check(
            "ledger_p99",
            results.trading.commit_to_ledger.p99_ms,
            LEDGER_P99_TARGET_MS,
        ),
        {
            let social = &results.social;
            Check {
                name: "feed_fan_out",
                value: social.fan_out.per_second,
                unit: "items/s",
                limit: Some(social.raw_insert.per_second),
                ratio: Some(social.ratio),
                target: format!("≥ {:.2}", social.target_ratio),
                pass: social.ratio >= social.target_ratio,
            }
        },
        isolation_check("isolation_order_p99", &results.isolation.place_order),
        isolation_check("isolation_login_p99", &results.isolation.login),
        {
            let auth = &results.auth;
            let limit = auth.cheap_unloaded.p99_ms;
            let factor = auth.cheap_loaded.p99_ms / limit.max(f64::MIN_POSITIVE);
            Check {
                name: "cheap_rpc_p99_under_login_load",
                value: auth.cheap_loaded.p99_ms,
                unit: "ms",
                limit: Some(limit),
                ratio: Some(factor),
                target: format!("≤ {CHEAP_P99_FACTOR:.1}×"),
                pass: factor <= CHEAP_P99_FACTOR,
            }
        },
        {
            let rpc = &results.gateway.rpc;
            Check {
                name: "gateway_rpc",
                value: rpc.through_gateway.per_second,
                unit: "calls/s",
                limit: Some(rpc.direct.per_second),
                ratio: Some(rpc.ratio),
                target: format!("≥ {RPC_RATIO_TARGET:.2}"),
                pass: rpc.ratio >= RPC_RATIO_TARGET,
            }
        },
        latency_check(
            "gateway_notify_p99",
            results.gateway.notifications.latency.p99_ms,
            NOTIFY_P99_TARGET_MS,
        ),
    ]
}
