//! `social-service`: config → telemetry → `App::build` → serve → drain.
//!
//! ```text
//! social-service --config social.toml --set server.listen=0.0.0.0:50064
//! ```
//! Needs `wharf migrate` to have run, and the issuer's public key in `[tokens.keys]` (social
//! only verifies tokens), e.g. `--set 'tokens.keys=[{kid=2026-11,public_key=<JWK x>}]'`.
//!
//! Safe to kill at any instant (SIGKILL included): a profile and its saga reply, a trade's
//! feed items, its counted trade and its achievements each commit together with the event's
//! inbox row; an unacknowledged event is redelivered and absorbed by the inbox, and an
//! unpublished outbox row is published by the next run. Achievement events and notifications
//! are best effort: one queued when the process dies is lost, by contract.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wharf_events::EventsConfig;
use wharf_outbox::RelayConfig;
use wharf_runtime::GrpcServer;
use wharf_runtime::config::{NatsConfig, RedisConfig};
use wharf_runtime::db::DatabaseConfig;
use wharf_runtime::server::{ServerConfig, Stopped};
use wharf_runtime::telemetry::TelemetryConfig;
use wharf_social::{App, Deps, SocialConfig};
use wharf_tokens::TokensConfig;

#[derive(Debug, Parser)]
#[command(name = "social-service", version, about = "The Wharf social service")]
struct Cli {
    /// TOML config file (defaults → file → WHARF_<SECTION>__<KEY> env → --set).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Overrides one key, e.g. --set social.consumer_concurrency=8 (repeatable).
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
    /// Unused (social keeps nothing in Redis), but accepted: one config file, or the local
    /// stack's `WHARF_REDIS__URL`, serves every service.
    redis: RedisConfig,
    relay: RelayConfig,
    events: EventsConfig,
    tokens: TokensConfig,
    social: SocialConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = wharf_runtime::config::load(cli.config.as_deref(), &cli.overrides)?;
    let _telemetry = wharf_runtime::telemetry::init(&config.telemetry, "social-service")?;

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
        config.social.clone(),
        &config.tokens,
    )
    .await?;

    let mut server = GrpcServer::bind(&config.server).await?;
    server.add_service(app.server());
    println!("social-service listening on {}", server.local_addr());

    // The relay and the consumers. If they stop on their own (a contradicting consumer on the
    // server, say), the process shuts down and exits with their error rather than serve
    // profiles whose registrations, feeds and achievements no longer move.
    let stop = CancellationToken::new();
    let failed = CancellationToken::new();
    let background = tokio::spawn({
        let stop = stop.clone();
        let failed = failed.clone();
        async move {
            let result = app.run_until_stopped(stop).await;
            failed.cancel();
            result
        }
    });
    let shutdown = async {
        tokio::select! {
            () = wharf_runtime::shutdown::signal() => {}
            () = failed.cancelled() => {}
        }
    };
    let stopped = server.run_until_stopped(shutdown).await?;
    stop.cancel();
    background
        .await
        .context("the social background tasks panicked")??;
    match stopped {
        Stopped::Drained => println!("social-service stopped cleanly"),
        Stopped::GraceElapsed => println!("social-service stopped after the grace period"),
    }
    Ok(())
}
