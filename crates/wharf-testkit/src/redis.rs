//! A throwaway Redis with the shipped durability settings (`appendonly yes`).

use std::time::Duration;

use crate::process::ServerProcess;

#[derive(Debug)]
pub struct TestRedis {
    pub port: u16,
    process: ServerProcess,
    _dir: tempfile::TempDir,
}

impl TestRedis {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("wharf-redis").tempdir()?;
        let port = crate::free_port();
        let conf = crate::repo_root().join("deploy/local/redis.conf");
        let command = vec![
            "redis-server".to_owned(),
            conf.display().to_string(),
            "--port".to_owned(),
            port.to_string(),
            "--dir".to_owned(),
            dir.path().display().to_string(),
            // The test owns the process: no daemon, logs to the file the process writes.
            "--daemonize".to_owned(),
            "no".to_owned(),
            "--pidfile".to_owned(),
            String::new(),
            "--logfile".to_owned(),
            String::new(),
        ];
        let process = ServerProcess::spawn("redis-server", command, dir.path().join("redis.log"))?;
        let redis = Self {
            port,
            process,
            _dir: dir,
        };
        redis.wait_ready().await?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let port = self.port;
        crate::wait_until(
            Duration::from_secs(20),
            "Redis to answer PING",
            || async move {
                tokio::process::Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "ping"])
                    .output()
                    .await
                    .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "PONG")
            },
        )
        .await
        .map_err(|err| anyhow::anyhow!("{err}; log:\n{}", self.process.log_tail()))
    }

    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    pub fn stop(&mut self) {
        self.process.stop("TERM", Duration::from_secs(10));
    }

    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.restart()?;
        self.wait_ready().await
    }
}
