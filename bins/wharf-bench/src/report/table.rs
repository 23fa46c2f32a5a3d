//! The table on stdout: limits first, then each target with its ratio and verdict.

use super::{Check, Report};

struct Row {
    scenario: String,
    value: String,
    limit: String,
    ratio: String,
    target: String,
    result: String,
}

impl Row {
    fn info(scenario: String, value: String) -> Self {
        Self {
            scenario,
            value,
            limit: String::new(),
            ratio: String::new(),
            target: String::new(),
            result: "limit".to_owned(),
        }
    }

    fn check(scenario: String, check: &Check, limit: String) -> Self {
        Self {
            scenario,
            value: match check.unit {
                "ms" => format!("{:.2} ms", check.value),
                unit => format!("{} {unit}", thousands(check.value)),
            },
            limit,
            ratio: check
                .ratio
                .map(|ratio| format!("{ratio:.2}"))
                .unwrap_or_default(),
            target: check.target.clone(),
            result: if check.pass { "PASS" } else { "FAIL" }.to_owned(),
        }
    }
}

pub fn render(report: &Report) -> String {
    let results = &report.results;
    let l1 = &results.l1;
    let mut rows = Vec::new();
    for run in &l1.windows {
        let best = if run.window == l1.best_window {
            " (best)"
        } else {
            ""
        };
        rows.push(Row::info(
            format!("L1  JetStream async publish, W={}{best}", run.window),
            format!("{} msg/s", thousands(run.throughput.per_second)),
        ));
    }
    rows.push(Row::info(
        "L1s sync publish ack p50 / p99".to_owned(),
        format!("{:.2} / {:.2} ms", l1.sync_ack.p50_ms, l1.sync_ack.p99_ms),
    ));
    rows.push(Row::info(
        format!("L3  apply tx in SQL, {} conns", results.l3.concurrency),
        format!("{} rows/s", thousands(results.l3.throughput.per_second)),
    ));
    let auth = &results.auth;
    rows.push(Row::info(
        format!("A1  argon2id verify, {} threads", auth.cores),
        format!("{:.1} verifies/s", auth.verify_limit.per_second),
    ));
    let lat = &results.latency;
    let checks = [
        (
            "relay_drain",
            format!(
                "relay drain, {} rows",
                thousands_u(results.relay.drain.count)
            ),
            format!("L1 {} msg/s", thousands(l1.best.per_second)),
        ),
        (
            "consumer_drain",
            format!(
                "consumer drain, {} events",
                thousands_u(results.consumer.drain.count)
            ),
            format!("L3 {} rows/s", thousands(results.l3.throughput.per_second)),
        ),
        (
            "latency_p50",
            format!("commit→consumer p50 @{}/s", lat.target_rate),
            String::new(),
        ),
        (
            "latency_p99",
            format!("commit→consumer p99 @{}/s", lat.target_rate),
            String::new(),
        ),
        (
            "login_throughput",
            format!("login through gRPC, {} clients", auth.login_clients),
            format!("A1 {:.1}/s", auth.verify_limit.per_second),
        ),
        (
            "place_order",
            format!(
                "PlaceOrder over gRPC, {} clients",
                results.trading.concurrency
            ),
            format!("T1 {:.0}/s", results.trading.direct.per_second),
        ),
        (
            "ledger_p99",
            format!(
                "order commit→ledger p99 @{:.0}/s",
                results.trading.ledger_rate
            ),
            String::new(),
        ),
        (
            "feed_fan_out",
            format!("feed fan-out, {} followers", results.social.followers),
            format!("insert {:.0} rows/s", results.social.raw_insert.per_second),
        ),
        (
            "isolation_order_p99",
            format!(
                "PlaceOrder p99 @{}/s, social stopped",
                results.isolation.place_order.rate
            ),
            format!(
                "running {:.2} ms",
                results.isolation.place_order.social_running.p99_ms
            ),
        ),
        (
            "isolation_login_p99",
            format!(
                "Login p99 @{}/s, social stopped",
                results.isolation.login.rate
            ),
            format!(
                "running {:.2} ms",
                results.isolation.login.social_running.p99_ms
            ),
        ),
        (
            "cheap_rpc_p99_under_login_load",
            format!("GetJwks p99 @{}/s under login load", auth.cheap_rate),
            format!("alone {:.2} ms", auth.cheap_unloaded.p99_ms),
        ),
        (
            "gateway_rpc",
            format!(
                "WhoAmI through the gateway, {} clients",
                results.gateway.rpc.clients
            ),
            format!("direct {:.0}/s", results.gateway.rpc.direct.per_second),
        ),
        (
            "gateway_notify_p99",
            format!(
                "notification p99 @{}/s, {} subscribers",
                results.gateway.notifications.rate,
                thousands_u(results.gateway.notifications.subscribers as u64)
            ),
            String::new(),
        ),
    ];
    for (name, scenario, limit) in checks {
        if let Some(check) = report.check(name) {
            rows.push(Row::check(scenario, check, limit));
        }
    }

    let mut out = layout(&rows);
    let e2e = &lat.end_to_end;
    out.push_str(&format!(
        "\nlatency @{}/s for {:.0} s: achieved {:.1}/s, {} events; p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms\n",
        lat.target_rate, lat.duration_s, lat.achieved_rate, lat.events,
        e2e.p50_ms, e2e.p90_ms, e2e.p99_ms, e2e.p999_ms, e2e.max_ms
    ));
    for (part, figures) in [
        ("intended → producer commit", &lat.producer_commit),
        ("producer commit → consumer commit", &lat.commit_to_consumer),
        (
            "  of which producer commit → handler",
            &lat.commit_to_handler,
        ),
        ("  and handler → consumer commit", &lat.handler_to_commit),
    ] {
        out.push_str(&format!(
            "  {part}: p50 {:.2} p99 {:.2} max {:.2} ms\n",
            figures.p50_ms, figures.p99_ms, figures.max_ms
        ));
    }
    out.push_str(&format!(
        "  machine stalls (the idle pacer thread woke late, {:.0} ms in all): {}\n",
        lat.stalls.total_ms, lat.stalls
    ));
    out.push_str(&format!(
        "relay: batch_size {}, workers {}; {} batches, {} duplicates, {} failures\n",
        results.relay.config.batch_size,
        results.relay.config.workers,
        results.relay.batches,
        results.relay.duplicates,
        results.relay.failures
    ));
    out.push_str(&format!(
        "auth: login p50 {:.1} p99 {:.1} ms, {} refused, {} timed out, {:.1}/s beside GetJwks; GetJwks alone p50 {:.2} p99 {:.2} ms, under load p50 {:.2} p99 {:.2} ms\n",
        auth.login_latency.p50_ms,
        auth.login_latency.p99_ms,
        auth.login_refused,
        auth.login_timed_out,
        auth.login_with_cheap.per_second,
        auth.cheap_unloaded.p50_ms,
        auth.cheap_unloaded.p99_ms,
        auth.cheap_loaded.p50_ms,
        auth.cheap_loaded.p99_ms
    ));
    out.push_str(&format!(
        "  machine stalls seen by GetJwks' pacer: alone [{}], under logins [{}]\n  {}\n",
        auth.cheap_stalls_alone, auth.cheap_stalls_loaded, auth.hashing_threads,
    ));
    let trading = &results.trading;
    out.push_str(&format!(
        "trading: order commit → ledger @{:.0}/s over {} orders: p50 {:.2} p99 {:.2} max {:.2} ms; machine stalls {}\n",
        trading.ledger_rate,
        trading.ledger_orders,
        trading.commit_to_ledger.p50_ms,
        trading.commit_to_ledger.p99_ms,
        trading.commit_to_ledger.max_ms,
        trading.ledger_stalls,
    ));
    let isolation = &results.isolation;
    for (call, compared) in [
        ("PlaceOrder", &isolation.place_order),
        ("Login", &isolation.login),
    ] {
        out.push_str(&format!(
            "isolation: {call} @{}/s, social running → stopped: p50 {:.2} → {:.2} ms, p99 {:.2} → {:.2} ms, failed {} → {}; machine stalls running [{}], stopped [{}]\n",
            compared.rate,
            compared.social_running.p50_ms,
            compared.social_stopped.p50_ms,
            compared.social_running.p99_ms,
            compared.social_stopped.p99_ms,
            compared.failed_running,
            compared.failed_stopped,
            compared.stalls_running,
            compared.stalls_stopped,
        ));
    }
    out.push_str(&format!(
        "isolation: social returned to {} waiting trades and caught up in {:.1} s ({} feed items, {} followers per trader)\n",
        isolation.backlog_on_return,
        isolation.catch_up.seconds,
        thousands_u(isolation.feed_items),
        isolation.followers
    ));
    let notify = &results.gateway.notifications;
    out.push_str(&format!(
        "gateway: notifications to {} subscribers on 2 instances ({} connections), {} of {} delivered; p50 {:.2} p90 {:.2} p99 {:.2} max {:.2} ms; machine stalls {}\n",
        notify.subscribers,
        notify.connections,
        notify.delivered,
        notify.published,
        notify.latency.p50_ms,
        notify.latency.p90_ms,
        notify.latency.p99_ms,
        notify.latency.max_ms,
        notify.stalls,
    ));
    out.push_str(&format!(
        "overall: {}\n",
        if report.passed { "PASS" } else { "FAIL" }
    ));
    out
}

fn layout(rows: &[Row]) -> String {
    let header = Row {
        scenario: "scenario".to_owned(),
        value: "value".to_owned(),
        limit: "limit".to_owned(),
        ratio: "ratio".to_owned(),
        target: "target".to_owned(),
        result: "result".to_owned(),
    };
    let all: Vec<&Row> = std::iter::once(&header).chain(rows).collect();
    let width = |get: fn(&Row) -> &String| {
        all.iter()
            .map(|row| get(row).chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [
        width(|row| &row.scenario),
        width(|row| &row.value),
        width(|row| &row.limit),
        width(|row| &row.ratio),
        width(|row| &row.target),
    ];
    let mut out = String::new();
    for (index, row) in all.iter().enumerate() {
        let cells = [
            &row.scenario,
            &row.value,
            &row.limit,
            &row.ratio,
            &row.target,
        ];
        for (cell, width) in cells.iter().zip(widths) {
            out.push_str(cell);
            out.push_str(&" ".repeat(width - cell.chars().count() + 2));
        }
        out.push_str(&row.result);
        out.push('\n');
        if index == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * widths.len() + 6));
            out.push('\n');
        }
    }
    out
}

/// `12345.6` → `12,346`.
pub fn thousands(value: f64) -> String {
    thousands_u(value.round().max(0.0) as u64)
}

pub fn thousands_u(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{thousands, thousands_u};

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands_u(0), "0");
        assert_eq!(thousands_u(999), "999");
        assert_eq!(thousands_u(1_000), "1,000");
        assert_eq!(thousands_u(1_234_567), "1,234,567");
        assert_eq!(thousands(12_345.6), "12,346");
        assert_eq!(thousands(-3.0), "0");
    }
}
