//! `gateway`: config → telemetry → `App::build` → serve → drain.
//!
//! ```text
//! gateway --config gateway.toml \
//!   --set 'gateway.upstreams.auth=["http://10.0.0.5:50061","http://10.0.0.6:50061"]'
//! ```
//! Needs the auth service's public key in `[[tokens.keys]]`, the Redis that auth keeps its
//! sessions in, and NATS. Behind it, auth should set `auth.trust_forwarded_for = true` (the
//! gateway overwrites `x-forwarded-for` with the client's address).
#![forbid(unsafe_code)]

use clap::Parser;
use serde::{Deserialize, Serialize};
use wharf_events::EventsConfig;
use wharf_gateway::{App, Deps, GatewayConfig};
use wharf_runtime::GrpcServer;
use wharf_runtime::config::{NatsConfig, RedisConfig};
use wharf_runtime::server::ServerConfig;
use wharf_runtime::service::{ServiceArgs, connect_nats, serve};
use wharf_runtime::telemetry::TelemetryConfig;
use wharf_tokens::TokensConfig;

#[derive(Debug, Parser)]
#[command(name = "gateway", version, about = "The Wharf gateway")]
struct Cli {
    #[command(flatten)]
    args: ServiceArgs,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    server: ServerConfig,
    telemetry: TelemetryConfig,
    nats: NatsConfig,
    redis: RedisConfig,
    events: EventsConfig,
    tokens: TokensConfig,
    gateway: GatewayConfig,
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
    let _telemetry = wharf_runtime::telemetry::init(&config.telemetry, "gateway")?;
    let mut app = App::build(
        Deps {
            nats: connect_nats(&config.nats).await?,
            namespace: config.events.namespace(),
            redis: config.redis.clone(),
        },
        config.gateway.clone(),
        &config.tokens,
    )
    .await?;
    let mut server = GrpcServer::bind(&config.server).await?;
    app.register(&mut server).await;
    serve("gateway", server, move |stop| app.run_until_stopped(stop)).await
}
