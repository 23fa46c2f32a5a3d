//! `trading-service`: config → telemetry → `App::build` → serve → drain.
//!
//! ```text
//! trading-service --config trading.toml --set server.listen=0.0.0.0:50062
//! ```
//! Needs `wharf migrate` to have run, and the auth service's public key in `[[tokens.keys]]`.
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
use wharf_tokens::TokensConfig;
use wharf_trading::{App, Deps, TradingConfig};

#[derive(Debug, Parser)]
#[command(name = "trading-service", version, about = "The Wharf trading service")]
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
    trading: TradingConfig,
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
    let _telemetry = wharf_runtime::telemetry::init(&config.telemetry, "trading-service")?;
    let app = App::build(
        Deps {
            database: config.database.clone(),
            nats: connect_nats(&config.nats).await?,
            namespace: config.events.namespace(),
            relay: config.relay.clone(),
        },
        config.trading.clone(),
        &config.tokens,
    )
    .await?;
    let mut server = GrpcServer::bind(&config.server).await?;
    server.add_service(app.server());
    serve("trading-service", server, move |stop| {
        app.run_until_stopped(stop)
    })
    .await
}
