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

use clap::Parser;
use serde::{Deserialize, Serialize};
use wharf_events::EventsConfig;
use wharf_outbox::RelayConfig;
use wharf_runtime::GrpcServer;
use wharf_runtime::config::{NatsConfig, RedisConfig};
use wharf_runtime::db::DatabaseConfig;
use wharf_runtime::server::ServerConfig;
use wharf_runtime::service::{ServiceArgs, connect_nats, serve};
use wharf_runtime::telemetry::TelemetryConfig;
use wharf_social::{App, Deps, SocialConfig};
use wharf_tokens::TokensConfig;

#[derive(Debug, Parser)]
#[command(name = "social-service", version, about = "The Wharf social service")]
struct Cli {
    #[command(flatten)]
    args: ServiceArgs,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    server: ServerConfig,
    telemetry: TelemetryConfig,
    database: DatabaseConfig,
    nats: NatsConfig,
    /// Unused by this service, but accepted: one config file, or the local stack's
    /// `WHARF_REDIS__URL`, serves every service.
    redis: RedisConfig,
    relay: RelayConfig,
    events: EventsConfig,
    tokens: TokensConfig,
    social: SocialConfig,
}

/// mimalloc: a service's allocations cross threads (a request is decoded on one worker and
/// freed on another), where glibc's per-arena locks cost more than the work; `wharf-bench`
/// measures with the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { args } = Cli::parse();
    let config: Config = wharf_runtime::config::load(args.config.as_deref(), &args.overrides)?;
    let _telemetry = wharf_runtime::telemetry::init(&config.telemetry, "social-service")?;
    let app = App::build(
        Deps {
            database: config.database.clone(),
            nats: connect_nats(&config.nats).await?,
            namespace: config.events.namespace(),
            relay: config.relay.clone(),
        },
        config.social.clone(),
        &config.tokens,
    )
    .await?;
    let mut server = GrpcServer::bind(&config.server).await?;
    server.add_service(app.server());
    serve("social-service", server, move |stop| {
        app.run_until_stopped(stop)
    })
    .await
}
