//! `trading-service`: config → telemetry → `App::build` → serve → drain.
//!
//! ```text
//! trading-service --config trading.toml --set server.listen=0.0.0.0:50062
//! ```
//! Needs `wharf migrate` to have run, and the auth service's public key in `[[tokens.keys]]`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wharf_events::EventsConfig;
use wharf_outbox::RelayConfig;
use wharf_runtime::GrpcServer;
use wharf_runtime::config::NatsConfig;
use wharf_runtime::db::DatabaseConfig;
use wharf_runtime::server::{ServerConfig, Stopped};
use wharf_runtime::telemetry::TelemetryConfig;
use wharf_tokens::TokensConfig;
use wharf_trading::{App, Deps, TradingConfig};

#[derive(Debug, Parser)]
#[command(name = "trading-service", version, about = "The Wharf trading service")]
struct Cli {
    /// TOML config file (defaults → file → WHARF_<SECTION>__<KEY> env → --set).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Overrides one key, e.g. --set trading.fee_bps=5 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    server: ServerConfig,
    telemetry: TelemetryConfig,
    database: DatabaseConfig,
    nats: NatsConfig,
    relay: RelayConfig,
    events: EventsConfig,
    tokens: TokensConfig,
    trading: TradingConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = wharf_runtime::config::load(cli.config.as_deref(), &cli.overrides)?;
    let _telemetry = wharf_runtime::telemetry::init(&config.telemetry, "trading-service")?;

    let nats = config
        .nats
        .connect()
        .await
        .with_context(|| format!("failed to connect to NATS at {}", config.nats.url))?;
    let app = App::build(
        Deps {
            database: config.database.clone(),
            nats,
            namespace: config.events.namespace(),
            relay: config.relay.clone(),
        },
        config.trading.clone(),
        &config.tokens,
    )
    .await?;

    let mut server = GrpcServer::bind(&config.server).await?;
    server.add_service(app.server());
    println!("trading-service listening on {}", server.local_addr());

    let stop = CancellationToken::new();
    let mut background = tokio::spawn(app.run_until_stopped(stop.clone()));
    // The background work (relay, consumers) ending by itself is a failure: stop and say why.
    let stopped = tokio::select! {
        stopped = server.run_until_stopped(wharf_runtime::shutdown::signal()) => stopped?,
        ended = &mut background => {
            ended.context("the background tasks panicked")??;
            anyhow::bail!("the background tasks stopped by themselves");
        }
    };
    stop.cancel();
    background
        .await
        .context("the trading background tasks panicked")??;
    match stopped {
        Stopped::Drained => println!("trading-service stopped cleanly"),
        Stopped::GraceElapsed => println!("trading-service stopped after the grace period"),
    }
    Ok(())
}
