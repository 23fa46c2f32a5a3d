//! The panel of absolute figures every ratio was computed from.

use super::{INK, MUTED, Svg};
use crate::report::Report;
use crate::report::table::thousands;

/// The absolute figures every ratio was computed from.
pub fn limits(svg: &mut Svg, report: &Report, (x, y, w, h): (f64, f64, f64, f64)) {
    let results = &report.results;
    svg.rect(x, y, w, h, "#f6f8fa");
    svg.text(
        x + 16.0,
        y + 28.0,
        15.0,
        INK,
        "start",
        "bold",
        "Measured in this run",
    );
    let l1 = &results.l1;
    let windows = l1
        .windows
        .iter()
        .map(|run| format!("W={} {}", run.window, thousands(run.throughput.per_second)))
        .collect::<Vec<_>>()
        .join(" · ");
    let lat = &results.latency;
    let left = [
        (
            "L1 JetStream publish (best)",
            format!(
                "{} msg/s  (W={})",
                thousands(l1.best.per_second),
                l1.best_window
            ),
        ),
        ("L1 by window", windows),
        (
            "L1s sync ack p50 / p99",
            format!("{:.2} / {:.2} ms", l1.sync_ack.p50_ms, l1.sync_ack.p99_ms),
        ),
        (
            "L3 apply tx in SQL",
            format!(
                "{} rows/s  ({} conns)",
                thousands(results.l3.throughput.per_second),
                results.l3.concurrency
            ),
        ),
        (
            "message",
            format!(
                "{} B payload + {} B headers",
                l1.payload_bytes, l1.header_bytes
            ),
        ),
    ];
    let right = [
        (
            "relay drain",
            format!(
                "{} rows/s  (batch {}, {} workers)",
                thousands(results.relay.drain.per_second),
                results.relay.config.batch_size,
                results.relay.config.workers
            ),
        ),
        (
            "consumer drain",
            format!(
                "{} events/s  (concurrency {})",
                thousands(results.consumer.drain.per_second),
                results.consumer.concurrency
            ),
        ),
        (
            "latency run",
            format!(
                "{}/s target, {:.1}/s achieved, {:.0} s",
                lat.target_rate, lat.achieved_rate, lat.duration_s
            ),
        ),
        (
            "intended → producer commit",
            format!(
                "p50 {:.2} · p99 {:.2} ms",
                lat.producer_commit.p50_ms, lat.producer_commit.p99_ms
            ),
        ),
        (
            "producer commit → consumer",
            format!(
                "p50 {:.2} · p99 {:.2} ms",
                lat.commit_to_consumer.p50_ms, lat.commit_to_consumer.p99_ms
            ),
        ),
    ];
    for (column, entries) in [(0.0, left), (w / 2.0, right)] {
        for (row, (label, value)) in entries.iter().enumerate() {
            let line_y = y + 58.0 + 27.0 * row as f64;
            svg.text(
                x + 16.0 + column,
                line_y,
                13.0,
                MUTED,
                "start",
                "normal",
                label,
            );
            svg.text(
                x + 210.0 + column,
                line_y,
                13.0,
                INK,
                "start",
                "bold",
                value,
            );
        }
    }
}
