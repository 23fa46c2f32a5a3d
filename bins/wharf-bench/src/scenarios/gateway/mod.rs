//! The gateway (issue 7): what the public entry point costs a cheap call, and how fast it fans
//! notifications out.
//!
//! 1. **A cheap authenticated RPC through the gateway against the same RPC called directly**,
//!    in the same run ([`rpc`]): `WhoAmI` on an in-process auth service, closed loop, the same
//!    clients and connections both ways. Target: through the gateway ≥
//!    [`RPC_RATIO_TARGET`] × direct.
//! 2. **Notification delivery with 10,000 subscribers across two gateway instances**
//!    ([`fanout`]): `Subscribe` streams split over two in-process gateways, then notifications
//!    published at a fixed rate to random users, open loop, each timed from its intended send
//!    time to its arrival at the subscriber. Target: p99 ≤ [`NOTIFY_P99_TARGET_MS`].
//!
//! The gateways run as `gateway` runs them (`App::build`, `register`, `run_until_stopped` on a
//! real loopback server), with their Redis session check and GCRA rate limits on; only the
//! limits themselves are raised, since refusals are not what is measured.
//!
//! # Layout
//! - [`rpc`]: the auth upstream, `WhoAmI` direct and through a gateway.
//! - [`fanout`]: sessions, subscribers, the publisher and the receivers.

pub mod fanout;
pub mod rpc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use wharf_gateway::notify::Hub;
use wharf_gateway::{App, Deps, GatewayConfig};
use wharf_resilience::Limit;
use wharf_runtime::GrpcServer;
use wharf_runtime::config::RedisConfig;
use wharf_runtime::server::ServerConfig;
use wharf_tokens::TokensConfig;

use super::progress;
use crate::cli::Params;
use crate::env::BenchEnv;
use crate::scenarios::Running;

/// Through-gateway throughput ≥ this × direct.
pub const RPC_RATIO_TARGET: f64 = 0.6;
/// Notification delivery p99 bound.
pub const NOTIFY_P99_TARGET_MS: f64 = 50.0;

#[derive(Debug, Clone, Serialize)]
pub struct GatewayRun {
    pub rpc: rpc::RpcRun,
    pub notifications: fanout::FanOutRun,
}

pub async fn run(env: &BenchEnv, params: &Params) -> anyhow::Result<GatewayRun> {
    let topology = env.topology("gateway").await?;
    let redis = RedisConfig {
        url: std::env::var("REDIS_URL").unwrap_or_else(|_| RedisConfig::default().url),
        key_prefix: format!("{}-gateway:", env.tag()),
        ..RedisConfig::default()
    };
    let deps = Deps {
        nats: env.client.clone(),
        namespace: topology.namespace.clone(),
        redis: redis.clone(),
    };
    let outcome = async {
        let rpc = rpc::run(env, params, &deps).await?;
        let notifications = fanout::run(env, params, &deps).await?;
        anyhow::Ok(GatewayRun { rpc, notifications })
    }
    .await;
    // NOTIFY is the gateway's own stream, not one of the topology's: removed here.
    let notify = topology.namespace.stream(wharf_gateway::notify::STREAM);
    if env.js.delete_stream(&notify).await.is_err() {
        progress(&format!("could not delete stream {notify}"));
    }
    super::delete_redis_keys(&redis).await;
    outcome
}

/// The gateway's configuration in this bench: its real defaults (session cache, retries,
/// breakers, buffers), with rate limits no run can reach.
fn config() -> GatewayConfig {
    let mut config = GatewayConfig::default();
    let unreachable = Limit::new(100_000_000, Duration::from_secs(1));
    config.limits.per_user = unreachable;
    config.limits.per_address = unreachable;
    config
}

/// One gateway instance served on a loopback port, with its background work (the
/// notification hub, upstream health probes).
struct Instance {
    addr: SocketAddr,
    hub: Arc<Hub>,
    running: Running,
}

impl Instance {
    async fn start(
        deps: &Deps,
        config: GatewayConfig,
        tokens: &TokensConfig,
    ) -> anyhow::Result<Self> {
        let mut app = App::build(deps.clone(), config, tokens)
            .await
            .context("failed to build a gateway")?;
        let mut server = GrpcServer::bind(&ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            // Clients are gone when it stops; nothing is left to drain.
            shutdown_grace: Duration::from_secs(2),
            ..ServerConfig::default()
        })
        .await?;
        app.register(&mut server).await;
        let addr = server.local_addr();
        let hub = Arc::clone(app.hub());
        let mut running = Running::default();
        running.serve(server);
        running.spawn("gateway", move |stop| app.run_until_stopped(stop));
        Ok(Self { addr, hub, running })
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}
