//! What every service binary does around its `App`: read the flags, connect to NATS, and serve
//! with the App's background work (relays, consumers) alongside, until a signal — or until
//! that background work stops by itself, which is always a failure: the process then drains
//! and exits with the reason instead of serving half-alive.

use std::future::Future;
use std::path::PathBuf;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::GrpcServer;
use crate::config::NatsConfig;
use crate::server::Stopped;

/// The flags of every service binary.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// TOML config file (defaults → file → WHARF_<SECTION>__<KEY> env → --set).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overrides one key, e.g. --set server.listen=0.0.0.0:50061 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// A NATS client that reconnects forever, with the address in its error.
pub async fn connect_nats(config: &NatsConfig) -> anyhow::Result<async_nats::Client> {
    config
        .connect()
        .await
        .with_context(|| format!("failed to connect to NATS at {}", config.url))
}

/// Serves `server` as `name` with `background` running beside it, then drains both.
pub async fn serve<F, E>(
    name: &str,
    server: GrpcServer,
    background: impl FnOnce(CancellationToken) -> F,
) -> anyhow::Result<()>
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<anyhow::Error> + Send + 'static,
{
    println!("{name} listening on {}", server.local_addr());
    let stop = CancellationToken::new();
    let ended = CancellationToken::new();
    let work = background(stop.clone());
    let background = tokio::spawn({
        let ended = ended.clone();
        async move {
            let result = work.await;
            ended.cancel();
            result
        }
    });
    let shutdown = async {
        tokio::select! {
            () = crate::shutdown::signal() => {}
            () = ended.cancelled() => {}
        }
    };
    let stopped = server.run_until_stopped(shutdown).await?;
    let stopped_by_itself = ended.is_cancelled() && !stop.is_cancelled();
    stop.cancel();
    background
        .await
        .with_context(|| format!("the {name} background tasks panicked"))?
        .map_err(Into::into)
        .with_context(|| format!("the {name} background work stopped"))?;
    if stopped_by_itself {
        anyhow::bail!("the {name} background work stopped by itself");
    }
    match stopped {
        Stopped::Drained => println!("{name} stopped cleanly"),
        Stopped::GraceElapsed => println!("{name} stopped after the grace period"),
    }
    Ok(())
}
