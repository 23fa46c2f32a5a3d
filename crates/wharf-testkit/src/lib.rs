//! Throwaway backing services for tests, and the faults a test injects into them.
//!
//! Each test gets what it needs of its own: a NATS server ([`TestNats`]), Redis
//! ([`TestRedis`]) or PostgreSQL cluster ([`TestPostgres`]) as a child process on a free
//! loopback port with its data in a temporary folder, or a fresh database on the shared stack
//! ([`FreshDatabase`]). Processes can be killed with SIGKILL, stopped with SIGTERM, and
//! restarted on the same port and data, so a test asserts what survived a real fault.
//!
//! Readiness is always a real check with a deadline (the server answers), never a sleep.
//!
//! # Layout
//! - [`process`]: a child process with kill -9 / stop / restart.
//! - [`nats`], [`redis`], [`postgres`]: the three servers.
//! - [`database`]: fresh databases on an existing server.
#![forbid(unsafe_code)]

pub mod database;
pub mod nats;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod serve;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use database::FreshDatabase;
pub use nats::TestNats;
pub use postgres::TestPostgres;
pub use redis::TestRedis;
pub use serve::{Served, loopback_server};

/// The repository root (testkit lives in `crates/wharf-testkit`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A free loopback port, released for the server to take.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// Polls `check` until it returns true or `within` passes.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    let mut delay = Duration::from_millis(5);
    loop {
        if check().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

/// A unique, subject-safe name for one test's streams, keys and databases.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("{prefix}{}", &id[id.len() - 12..])
}
