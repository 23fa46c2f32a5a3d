//! `wharf stack`: idempotent up, honest status, and down stopping only what it started.
//!
//! Runs a second stack of its own (own state folder, own ports) beside the one the test
//! command started, so it never disturbs other tests.

use std::net::TcpListener;
use std::process::Output;

use crate::helpers::wharf;

struct Stack {
    state: tempfile::TempDir,
    ports: [u16; 4],
}

impl Stack {
    fn new() -> Self {
        // Ask the OS for free ports, then release them for the servers to take.
        let listeners: Vec<TcpListener> = (0..4)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        Self {
            state: tempfile::Builder::new()
                .prefix("wharf-stack-test")
                .tempdir_in("/tmp")
                .unwrap(),
            ports: ports.try_into().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let [nats, monitor, redis, pg] = self.ports.map(|p| p.to_string());
        let mut command = wharf();
        command
            .arg("stack")
            .args(args)
            .env("WHARF_STATE_DIR", self.state.path())
            .env("WHARF_NATS_PORT", nats)
            .env("WHARF_NATS_MONITOR_PORT", monitor)
            .env("WHARF_REDIS_PORT", redis)
            .env("WHARF_PG_PORT", pg)
            // A throwaway cluster of its own, not the one DATABASE_URL points at.
            .env_remove("DATABASE_URL");
        command.output().expect("run wharf stack")
    }

    fn pids(&self) -> Vec<u32> {
        let output = self.run(&["status"]);
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .filter_map(|line| line.split("pid ").nth(1))
            .filter_map(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--purge"]);
    }
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .contains("State:\tZ")
}

/// `up` twice leaves the same processes running; `status` reports them; `down` stops exactly
/// those; `status` then says stopped with exit status 3.
#[test]
fn stack_up_is_idempotent_and_down_stops_what_it_started() {
    let stack = Stack::new();
    let first = stack.run(&["up"]);
    assert!(
        first.status.success(),
        "up failed: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let env = String::from_utf8_lossy(&stack.run(&["env"]).stdout).into_owned();
    assert!(
        env.contains(&format!("NATS_URL=nats://127.0.0.1:{}", stack.ports[0])),
        "{env}"
    );
    assert!(env.contains(&format!(":{}/wharf", stack.ports[3])), "{env}");

    let pids = stack.pids();
    assert_eq!(pids.len(), 3, "nats, redis and postgres are running");

    let second = stack.run(&["up"]);
    assert!(second.status.success());
    assert_eq!(stack.pids(), pids, "a second up starts nothing new");

    let status = stack.run(&["status"]);
    assert_eq!(status.status.code(), Some(0));
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("2.15.1"), "the pinned NATS runs: {text}");

    let down = stack.run(&["down"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    for pid in &pids {
        assert!(!alive(*pid), "pid {pid} still running after down");
    }
    assert_eq!(stack.run(&["status"]).status.code(), Some(3));
}
