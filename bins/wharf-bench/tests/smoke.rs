//! Smoke test of the real `wharf-bench` binary with `--quick`, against the local stack
//! (`DATABASE_URL`, `NATS_URL`; the stack's ports when unset).

use std::fs::File;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use sqlx::Connection;

// Every scenario, services included, in debug builds next to the rest of the suite.
const DEADLINE: Duration = Duration::from_secs(300);

/// A quick run measures every scenario, reports a positive figure for each, checks every
/// target, writes the plot, and leaves no database or stream behind.
#[tokio::test]
async fn quick_run_reports_every_scenario_and_cleans_up() {
    let out = tempfile::tempdir().expect("temp dir");
    let stdout = out.path().join("stdout.txt");
    let stderr = out.path().join("stderr.txt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf-bench"))
        .arg("--quick")
        .arg("--out")
        .arg(out.path())
        .stdout(File::create(&stdout).expect("stdout file"))
        .stderr(File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("spawn wharf-bench");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for wharf-bench") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            child.kill().ok();
            panic!("wharf-bench --quick ran past {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let printed = std::fs::read_to_string(&stdout).unwrap_or_default();
    let logged = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(
        status.success(),
        "wharf-bench failed ({status}):\n{printed}\n{logged}"
    );
    assert!(
        printed.contains("relay drain"),
        "no table on stdout:\n{printed}"
    );

    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("bench.json")).expect("bench.json written"),
    )
    .expect("bench.json is JSON");
    for pointer in [
        "/results/l1/best/per_second",
        "/results/l1/sync_ack/p50_ms",
        "/results/l1/sync_ack/p99_ms",
        "/results/l3/throughput/per_second",
        "/results/relay/drain/per_second",
        "/results/consumer/drain/per_second",
        "/results/latency/end_to_end/p50_ms",
        "/results/latency/end_to_end/p99_ms",
        "/results/latency/achieved_rate",
        "/results/auth/verify_limit/per_second",
        "/results/auth/login/per_second",
        "/results/auth/cheap_unloaded/p99_ms",
        "/results/auth/cheap_loaded/p99_ms",
        "/results/trading/direct/per_second",
        "/results/trading/grpc/per_second",
        "/results/trading/commit_to_ledger/p99_ms",
        "/results/social/raw_insert/per_second",
        "/results/social/fan_out/per_second",
        "/results/isolation/place_order/social_running/p99_ms",
        "/results/isolation/place_order/social_stopped/p99_ms",
        "/results/isolation/login/social_running/p99_ms",
        "/results/isolation/login/social_stopped/p99_ms",
        "/results/isolation/backlog_on_return",
        "/results/isolation/feed_items",
        "/results/gateway/rpc/direct/per_second",
        "/results/gateway/rpc/through_gateway/per_second",
        "/results/gateway/notifications/subscribers",
        "/results/gateway/notifications/delivered",
        "/results/gateway/notifications/latency/p99_ms",
        "/machine/nproc",
    ] {
        assert_positive(&report, pointer);
    }
    let windows = report
        .pointer("/results/l1/windows")
        .and_then(Value::as_array)
        .expect("L1 windows");
    assert_eq!(windows.len(), 3, "L1 tries three windows");
    for index in 0..windows.len() {
        assert_positive(
            &report,
            &format!("/results/l1/windows/{index}/throughput/per_second"),
        );
    }
    let checks: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|check| check["name"].as_str())
        .collect();
    assert_eq!(
        checks,
        [
            "relay_drain",
            "consumer_drain",
            "latency_p50",
            "latency_p99",
            "login_throughput",
            "place_order",
            "ledger_p99",
            "feed_fan_out",
            "isolation_order_p99",
            "isolation_login_p99",
            "cheap_rpc_p99_under_login_load",
            "gateway_rpc",
            "gateway_notify_p99"
        ]
    );
    let svg = std::fs::read_to_string(out.path().join("bench.svg")).expect("bench.svg written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));

    assert_cleaned_up(&logged).await;
}

/// A run stopped by SIGTERM in the middle of a scenario (as `kill`, a CI timeout or systemd
/// stops it) still drops its database and deletes its streams.
#[tokio::test]
async fn a_terminated_run_still_cleans_up() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf-bench"))
        .args(["--only", "latency"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn wharf-bench");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    let mut logged = String::new();
    // The latency scenario announces its 10 s open-loop phase once its streams, database and
    // pipeline are up: stop it there.
    let in_the_middle = async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            logged.push_str(&line);
            logged.push('\n');
            if line.starts_with("wharf-bench: latency: ") && line.contains("open loop") {
                return;
            }
        }
        panic!("wharf-bench ended before its latency phase:\n{logged}");
    };
    tokio::time::timeout(DEADLINE, in_the_middle)
        .await
        .expect("the latency phase starts");
    let pid = child.id().expect("still running").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("run kill");
    assert!(killed.success(), "kill -TERM {pid} failed");
    // The rest of its log, then its exit: both within a deadline, so a run that hangs in its
    // cleanup fails the test instead of stalling it.
    let exited = async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            logged.push_str(&line);
            logged.push('\n');
        }
        child.wait().await.expect("wait for wharf-bench")
    };
    let status = tokio::time::timeout(Duration::from_secs(60), exited)
        .await
        .expect("wharf-bench exits within 60 s of SIGTERM");
    assert!(!status.success(), "an interrupted run fails:\n{logged}");
    assert!(logged.contains("interrupted"), "{logged}");

    assert_cleaned_up(&logged).await;
}

fn assert_positive(report: &Value, pointer: &str) {
    let value = report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("bench.json has no number at {pointer}"));
    assert!(
        value > 0.0,
        "{pointer} is {value}, expected a positive number"
    );
}

/// The database and the streams named in the run's first line are gone.
async fn assert_cleaned_up(logged: &str) {
    let line = logged
        .lines()
        .find(|line| line.starts_with("wharf-bench: database "))
        .expect("the run names its database");
    let rest = line.trim_start_matches("wharf-bench: database ");
    let (database, prefix) = rest
        .split_once(", namespace prefix ")
        .expect("database and prefix");

    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://wharf@127.0.0.1:15432/wharf".to_owned());
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("PostgreSQL");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(database)
        .fetch_one(&mut admin)
        .await
        .expect("count databases");
    assert_eq!(left, 0, "database {database} was not dropped");

    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".to_owned());
    let js = async_nats::jetstream::new(async_nats::connect(nats).await.expect("NATS"));
    let stream_prefix = prefix.to_ascii_uppercase();
    let listing = js
        .stream_names()
        .filter_map(|name| async move { name.ok() })
        .collect::<Vec<String>>();
    let names = tokio::time::timeout(Duration::from_secs(10), listing)
        .await
        .expect("stream names within 10 s");
    let leftovers: Vec<&String> = names
        .iter()
        .filter(|name| name.starts_with(&stream_prefix))
        .collect();
    assert!(leftovers.is_empty(), "streams left behind: {leftovers:?}");
}
