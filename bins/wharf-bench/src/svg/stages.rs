//! The latency run's queues over time: events due but not yet committed by the producer
//! (due − committed), rows waiting for the relay (committed − published) and events waiting
//! for the consumer (published − applied). Whichever grows is the bottleneck.

use std::fmt::Write;

use super::{GRID, INK, MUTED, Svg, nice_ceiling};
use crate::report::Report;

const PRODUCER: &str = "#2a9d8f";
const RELAY: &str = "#d68a1f";
const CONSUMER: &str = "#7a4fc4";

pub fn stages(svg: &mut Svg, report: &Report, (x, y, w, h): (f64, f64, f64, f64)) {
    let lat = &report.results.latency;
    svg.rect(x, y, w, h, "#f6f8fa");
    svg.text(
        x + 16.0,
        y + 28.0,
        15.0,
        INK,
        "start",
        "bold",
        "Latency run: where events wait (backlog over time)",
    );
    let producer: Vec<(f64, f64)> = lat
        .stages
        .iter()
        .map(|s| (s.t_s, s.due.saturating_sub(s.committed) as f64))
        .collect();
    let relay: Vec<(f64, f64)> = lat
        .stages
        .iter()
        .map(|s| (s.t_s, s.committed.saturating_sub(s.published) as f64))
        .collect();
    let consumer: Vec<(f64, f64)> = lat
        .stages
        .iter()
        .map(|s| (s.t_s, s.published.saturating_sub(s.applied) as f64))
        .collect();
    let t_max = lat.stages.last().map_or(1.0, |s| s.t_s).max(0.1);
    let peak = producer
        .iter()
        .chain(&relay)
        .chain(&consumer)
        .map(|(_, n)| *n)
        .fold(1.0, f64::max);
    let n_max = nice_ceiling(peak.max(10.0));

    let (left, right, top, bottom) = (x + 80.0, x + w - 200.0, y + 48.0, y + h - 32.0);
    let px = |t: f64| left + (right - left) * (t / t_max);
    let py = |n: f64| bottom - (bottom - top) * (n / n_max);
    for tick in 0..=5 {
        let n = n_max * f64::from(tick) / 5.0;
        svg.line((left, py(n)), (right, py(n)), GRID, false);
        svg.text(
            left - 8.0,
            py(n) + 4.0,
            11.0,
            MUTED,
            "end",
            "normal",
            &format!("{n:.0}"),
        );
    }
    let step = nice_ceiling(t_max / 6.0);
    let mut t = 0.0;
    while t <= t_max + 1e-9 {
        let label = if step.fract() == 0.0 {
            format!("{t:.0} s")
        } else {
            format!("{t:.1} s")
        };
        svg.text(
            px(t),
            bottom + 18.0,
            11.0,
            MUTED,
            "middle",
            "normal",
            &label,
        );
        t += step;
    }
    for (index, (points, colour, label)) in [
        (&producer, PRODUCER, "due, not yet committed"),
        (&relay, RELAY, "waiting for the relay"),
        (&consumer, CONSUMER, "waiting for the consumer"),
    ]
    .into_iter()
    .enumerate()
    {
        let path: String = points.iter().fold(String::new(), |mut path, (t, n)| {
            let _ = write!(path, "{:.1},{:.1} ", px(*t), py(*n));
            path
        });
        svg.polyline(path.trim_end(), colour);
        let legend_y = top + 20.0 + 26.0 * index as f64;
        svg.line(
            (right + 20.0, legend_y - 4.0),
            (right + 44.0, legend_y - 4.0),
            colour,
            false,
        );
        svg.text(right + 50.0, legend_y, 12.0, INK, "start", "normal", label);
    }
    let note = format!("{} events at {}/s from t0", lat.events, lat.target_rate);
    svg.text(
        right + 20.0,
        top + 106.0,
        11.0,
        MUTED,
        "start",
        "normal",
        &note,
    );
}
