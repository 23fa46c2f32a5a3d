//! A throwaway NATS server with JetStream, the pinned version, `sync_interval: always`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::ServerProcess;

/// Where the pinned nats-server is: `WHARF_NATS_SERVER`, or what `deploy/local/tools.sh`
/// installs (the test command has run it already, so this is a cache hit).
pub fn nats_server_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("WHARF_NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let tools = crate::repo_root().join("deploy/local/tools.sh");
    let output = Command::new("bash")
        .arg(&tools)
        .arg("nats-server")
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "{} nats-server failed: {}",
        tools.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

#[derive(Debug)]
pub struct TestNats {
    pub port: u16,
    process: ServerProcess,
    _dir: tempfile::TempDir,
}

impl TestNats {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("wharf-nats").tempdir()?;
        let port = crate::free_port();
        let config = dir.path().join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\nmax_payload: 8MB\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
                dir.path().join("js").display()
            ),
        )?;
        let binary = nats_server_binary()?;
        let command = vec![
            binary.display().to_string(),
            "-c".to_owned(),
            config.display().to_string(),
        ];
        let process = ServerProcess::spawn("nats-server", command, dir.path().join("nats.log"))?;
        let nats = Self {
            port,
            process,
            _dir: dir,
        };
        nats.wait_ready().await?;
        Ok(nats)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A client that keeps reconnecting forever, as services do.
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        Ok(async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(self.url())
            .await?)
    }

    /// Ready means JetStream answers, not merely that the port is open.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let url = self.url();
        crate::wait_until(Duration::from_secs(20), "NATS JetStream to answer", || {
            let url = url.clone();
            async move {
                let Ok(client) = async_nats::connect(&url).await else {
                    return false;
                };
                async_nats::jetstream::new(client)
                    .query_account()
                    .await
                    .is_ok()
            }
        })
        .await
        .map_err(|err| anyhow::anyhow!("{err}; log:\n{}", self.process.log_tail()))
    }

    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    pub fn stop(&mut self) {
        self.process.stop("TERM", Duration::from_secs(10));
    }

    /// Starts again on the same port with the same JetStream store.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.restart()?;
        self.wait_ready().await
    }
}
