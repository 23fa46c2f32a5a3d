//! The two charts: throughput ratios against the 0.7 line, latency percentiles against their
//! bounds.

use super::{FAIL, GRID, INK, MUTED, NEUTRAL, PASS, Svg, nice_ceiling};
use crate::report::table::thousands;
use crate::report::{P50_TARGET_MS, P99_TARGET_MS, RATIO_TARGET, Report};

type Area = (f64, f64, f64, f64);

fn colour(pass: bool) -> &'static str {
    if pass { PASS } else { FAIL }
}

/// Horizontal bars: relay drain ÷ L1 and consumer drain ÷ L3, with the target line.
pub fn ratios(svg: &mut Svg, report: &Report, (x, y, w, h): Area) {
    svg.rect(x, y, w, h, "#f6f8fa");
    svg.text(
        x + 16.0,
        y + 28.0,
        15.0,
        INK,
        "start",
        "bold",
        "Throughput: system / machine limit",
    );
    let results = &report.results;
    let bars = [
        (
            "relay_drain",
            "relay drain / L1",
            format!(
                "{} rows/s of {} msg/s",
                thousands(results.relay.drain.per_second),
                thousands(results.l1.best.per_second)
            ),
        ),
        (
            "consumer_drain",
            "consumer drain / L3",
            format!(
                "{} events/s of {} rows/s",
                thousands(results.consumer.drain.per_second),
                thousands(results.l3.throughput.per_second)
            ),
        ),
    ];
    let largest = report
        .checks
        .iter()
        .filter_map(|check| check.ratio)
        .fold(1.0, f64::max);
    let scale_max = (largest * 1.1 * 4.0).ceil() / 4.0;
    let (left, right) = (x + 160.0, x + w - 30.0);
    let at = |ratio: f64| left + (right - left) * (ratio / scale_max).clamp(0.0, 1.0);
    let (top, bottom) = (y + 60.0, y + h - 40.0);

    let step = if scale_max > 2.0 { 0.5 } else { 0.25 };
    let mut tick = 0.0;
    while tick <= scale_max + 1e-9 {
        svg.line((at(tick), top), (at(tick), bottom), GRID, false);
        svg.text(
            at(tick),
            bottom + 18.0,
            11.0,
            MUTED,
            "middle",
            "normal",
            &format!("{tick:.2}"),
        );
        tick += step;
    }
    for (row, (name, label, caption)) in bars.iter().enumerate() {
        let Some(check) = report.check(name) else {
            continue;
        };
        let ratio = check.ratio.unwrap_or(0.0);
        let bar_y = top + 20.0 + 85.0 * row as f64;
        svg.text(x + 16.0, bar_y + 24.0, 13.0, INK, "start", "bold", label);
        svg.rect(left, bar_y, at(ratio) - left, 36.0, colour(check.pass));
        // A passing bar ends right of the target line: its label goes after the bar. A failing
        // bar ends left of it: its label goes inside (when it fits), so the line never crosses it.
        let inside = !check.pass && at(ratio) - left > 60.0;
        let (label_x, anchor, fill) = if inside {
            (at(ratio) - 8.0, "end", "#ffffff")
        } else {
            (at(ratio) + 8.0, "start", INK)
        };
        svg.text(
            label_x,
            bar_y + 24.0,
            14.0,
            fill,
            anchor,
            "bold",
            &format!("{ratio:.2}"),
        );
        svg.text(left, bar_y + 54.0, 11.0, MUTED, "start", "normal", caption);
    }
    svg.line(
        (at(RATIO_TARGET), top - 8.0),
        (at(RATIO_TARGET), bottom),
        INK,
        true,
    );
    svg.text(
        at(RATIO_TARGET),
        top - 14.0,
        11.0,
        INK,
        "middle",
        "bold",
        &format!("target ≥ {RATIO_TARGET:.2}"),
    );
}

/// Vertical bars: p50 … max of commit → consumer-commit, with the p50 and p99 bounds.
pub fn latency(svg: &mut Svg, report: &Report, (x, y, w, h): Area) {
    let lat = &report.results.latency;
    let e2e = &lat.end_to_end;
    svg.rect(x, y, w, h, "#f6f8fa");
    let title = format!(
        "Intended send → consumer commit, {}/s open loop",
        lat.target_rate
    );
    svg.text(x + 16.0, y + 28.0, 15.0, INK, "start", "bold", &title);

    let pass = |name| report.check(name).is_some_and(|check| check.pass);
    let bars = [
        ("p50", e2e.p50_ms, colour(pass("latency_p50"))),
        ("p90", e2e.p90_ms, NEUTRAL),
        ("p99", e2e.p99_ms, colour(pass("latency_p99"))),
        ("p99.9", e2e.p999_ms, NEUTRAL),
        ("max", e2e.max_ms, NEUTRAL),
    ];
    let scale_max = nice_ceiling((P99_TARGET_MS * 1.3).max(e2e.p99_ms * 1.2));
    let (top, bottom) = (y + 60.0, y + h - 36.0);
    // Room on the right for the bounds' labels, clear of the bars.
    let (left, right) = (x + 60.0, x + w - 90.0);
    let at = |ms: f64| bottom - (bottom - top) * (ms / scale_max).clamp(0.0, 1.0);

    for tick in 0..=5 {
        let ms = scale_max * f64::from(tick) / 5.0;
        svg.line((left, at(ms)), (right, at(ms)), GRID, false);
        svg.text(
            left - 8.0,
            at(ms) + 4.0,
            11.0,
            MUTED,
            "end",
            "normal",
            &format!("{ms:.0} ms"),
        );
    }
    let slot = (right - left) / bars.len() as f64;
    for (index, (label, ms, fill)) in bars.iter().enumerate() {
        let bar_x = left + slot * index as f64 + slot * 0.2;
        svg.rect(bar_x, at(*ms), slot * 0.6, bottom - at(*ms), fill);
        let clipped = *ms > scale_max;
        let value = if clipped {
            format!("↑ {ms:.1}")
        } else {
            format!("{ms:.1}")
        };
        let value_y = if clipped { top + 16.0 } else { at(*ms) - 6.0 };
        let value_fill = if clipped { "#ffffff" } else { INK };
        svg.text(
            bar_x + slot * 0.3,
            value_y,
            12.0,
            value_fill,
            "middle",
            "bold",
            &value,
        );
        svg.text(
            bar_x + slot * 0.3,
            bottom + 18.0,
            12.0,
            INK,
            "middle",
            "normal",
            label,
        );
    }
    // The p99 label sits above its line and the p50 label below, so they never overlap even
    // when a large scale squeezes the two lines together.
    for (bound, label, dy) in [(P50_TARGET_MS, "p50", 13.0), (P99_TARGET_MS, "p99", -4.0)] {
        svg.line((left, at(bound)), (right, at(bound)), INK, true);
        let text = format!("{label} ≤ {bound:.0} ms");
        svg.text(
            right + 6.0,
            at(bound) + dy,
            11.0,
            INK,
            "start",
            "bold",
            &text,
        );
    }
}
