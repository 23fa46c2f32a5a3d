//! A throwaway PostgreSQL cluster made with `initdb`, for tests that stop the database.
//!
//! Most tests only need a database of their own ([`crate::FreshDatabase`]); this is for the
//! ones that kill or stop PostgreSQL itself. initdb refuses to run as root, so as root the
//! cluster runs as the `postgres` user through `setpriv`, which execs in place: the child
//! process *is* the postmaster, so a SIGKILL reaches it (a forking `runuser` would orphan it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::ServerProcess;

fn pg_bin(tool: &str) -> anyhow::Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join(tool).exists())
        .collect();
    versions.sort();
    versions.pop().map(|bin| bin.join(tool)).ok_or_else(|| {
        anyhow::anyhow!("PostgreSQL's {tool} is not installed (apt-get install postgresql)")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// `command` as the postgres user when we are root.
fn as_cluster_owner(command: Vec<String>) -> Vec<String> {
    if is_root() {
        let mut wrapped = vec![
            "setpriv".to_owned(),
            "--reuid=postgres".to_owned(),
            "--regid=postgres".to_owned(),
            "--init-groups".to_owned(),
            "--".to_owned(),
        ];
        wrapped.extend(command);
        wrapped
    } else {
        command
    }
}

#[derive(Debug)]
pub struct TestPostgres {
    pub port: u16,
    process: ServerProcess,
    _dir: tempfile::TempDir,
}

impl TestPostgres {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("wharf-pg")
            .tempdir_in("/tmp")?;
        let data = dir.path().join("data");
        if is_root() {
            let status = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()?;
            anyhow::ensure!(status.success(), "chown of the cluster folder failed");
        }
        let initdb = as_cluster_owner(vec![
            pg_bin("initdb")?.display().to_string(),
            "-D".to_owned(),
            data.display().to_string(),
            "-U".to_owned(),
            "wharf".to_owned(),
            "--auth=trust".to_owned(),
            "--no-sync".to_owned(),
        ]);
        let output = Command::new(&initdb[0]).args(&initdb[1..]).output()?;
        anyhow::ensure!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );

        let port = crate::free_port();
        let command = as_cluster_owner(vec![
            pg_bin("postgres")?.display().to_string(),
            "-D".to_owned(),
            data.display().to_string(),
            "-p".to_owned(),
            port.to_string(),
            "-c".to_owned(),
            "listen_addresses=127.0.0.1".to_owned(),
            "-c".to_owned(),
            format!("unix_socket_directories={}", dir.path().display()),
        ]);
        let log = log_path(dir.path());
        let process = ServerProcess::spawn("postgres", command, log)?;
        let postgres = Self {
            port,
            process,
            _dir: dir,
        };
        postgres.wait_ready().await?;
        Ok(postgres)
    }

    /// The `postgres` database as superuser `wharf`.
    pub fn url(&self) -> String {
        format!("postgres://wharf@127.0.0.1:{}/postgres", self.port)
    }

    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let url = self.url();
        crate::wait_until(
            Duration::from_secs(30),
            "PostgreSQL to accept connections",
            || {
                let url = url.clone();
                async move {
                    use sqlx::Connection;
                    sqlx::PgConnection::connect(&url).await.is_ok()
                }
            },
        )
        .await
        .map_err(|err| anyhow::anyhow!("{err}; log:\n{}", self.process.log_tail()))
    }

    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// A fast shutdown (SIGINT): clients are disconnected, nothing committed is lost.
    pub fn stop(&mut self) {
        self.process.stop("INT", Duration::from_secs(30));
    }

    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.restart()?;
        self.wait_ready().await
    }
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("postgres.log")
}
