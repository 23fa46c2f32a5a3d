//! `bench.svg`, written by hand (no plotting crate): the ratio of each system figure to its
//! limit against the target line, the latency percentiles against their bounds, and the limits.
//!
//! # Layout
//! - this module: the document and its header; drawing primitives.
//! - [`panels`]: the ratio and latency charts.
//! - [`limits`]: the absolute figures.
//! - [`stages`]: the latency run's queues over time.

mod limits;
mod panels;
mod stages;

use std::fmt::Write;

use crate::report::Report;
use crate::report::table::thousands;

pub const WIDTH: f64 = 1000.0;
pub const HEIGHT: f64 = 870.0;
pub const PASS: &str = "#2f9e62";
pub const FAIL: &str = "#d64545";
pub const NEUTRAL: &str = "#6b86b8";
pub const INK: &str = "#1f2933";
pub const MUTED: &str = "#66788a";
pub const GRID: &str = "#e4e8ee";

pub fn render(report: &Report) -> String {
    let mut svg = Svg::default();
    let _ = write!(
        svg.0,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    svg.rect(0.0, 0.0, WIDTH, HEIGHT, "#ffffff");
    header(&mut svg, report);
    panels::ratios(&mut svg, report, (30.0, 100.0, 450.0, 290.0));
    panels::latency(&mut svg, report, (530.0, 100.0, 440.0, 290.0));
    limits::limits(&mut svg, report, (30.0, 420.0, 940.0, 180.0));
    stages::stages(&mut svg, report, (30.0, 620.0, 940.0, 220.0));
    svg.0.push_str("</svg>\n");
    svg.0
}

fn header(svg: &mut Svg, report: &Report) {
    let machine = &report.machine;
    svg.text(
        30.0,
        42.0,
        22.0,
        INK,
        "start",
        "bold",
        "wharf-bench — Wharf as a ratio of this machine's limits",
    );
    let verdict = if report.passed {
        ("PASS", PASS)
    } else {
        ("FAIL", FAIL)
    };
    svg.rect(WIDTH - 110.0, 20.0, 80.0, 32.0, verdict.1);
    svg.text(
        WIDTH - 70.0,
        42.0,
        18.0,
        "#ffffff",
        "middle",
        "bold",
        verdict.0,
    );
    let subtitle = format!(
        "{} · {} cores, {} GiB · NATS {} · PostgreSQL {} · {} build · {} events per drain",
        machine.measured_at,
        machine.nproc,
        machine.memory_gib,
        machine.nats_version,
        machine.postgres_version,
        machine.build_profile,
        thousands(report.params.events as f64),
    );
    svg.text(30.0, 68.0, 13.0, MUTED, "start", "normal", &subtitle);
}

/// An SVG document being written.
#[derive(Debug, Default)]
pub struct Svg(String);

impl Svg {
    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str) {
        let _ = write!(
            self.0,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" rx="3" fill="{fill}" stroke="none"/>"#,
            w.max(0.0),
            h.max(0.0)
        );
    }

    pub fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), stroke: &str, dashed: bool) {
        let dash = if dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            self.0,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" stroke-width="{}"{dash}/>"#,
            if dashed { 2 } else { 1 }
        );
    }

    pub fn polyline(&mut self, points: &str, stroke: &str) {
        let _ = write!(
            self.0,
            r#"<polyline points="{points}" fill="none" stroke="{stroke}" stroke-width="2.5" stroke-linejoin="round"/>"#
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub fn text(
        &mut self,
        x: f64,
        y: f64,
        size: f64,
        fill: &str,
        anchor: &str,
        weight: &str,
        text: &str,
    ) {
        let _ = write!(
            self.0,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" fill="{fill}" text-anchor="{anchor}" font-weight="{weight}" stroke="none">{}</text>"#,
            escape(text)
        );
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round axis maximum at or above `value`: 1, 2, 2.5 or 5 × a power of ten.
pub fn nice_ceiling(value: f64) -> f64 {
    let positive = value.max(1e-9);
    let magnitude = 10f64.powf(positive.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|step| step * magnitude)
        .find(|candidate| *candidate >= positive)
        .unwrap_or(10.0 * magnitude)
}

#[cfg(test)]
mod tests {
    use super::{escape, nice_ceiling};

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_ceiling(19.5), 20.0);
        assert_eq!(nice_ceiling(20.0), 20.0);
        assert_eq!(nice_ceiling(21.0), 25.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(0.7), 1.0);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a < b & c > d"), "a &lt; b &amp; c &gt; d");
    }
}
