//! The registry of services `wharf dev`, `wharf serve` and `wharf migrate` know about.
//!
//! Each service crate contributes its schema migrations and its `App`; this is the one place
//! to touch when a service is added.

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wharf_runtime::GrpcServer;
use wharf_runtime::db::SchemaMigrations;

use crate::config::{WharfConfig, nats_client};

/// A service `wharf` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    Auth,
    Trading,
    Revenue,
    Social,
    /// The public entry point; it runs alone, in front of the others.
    Gateway,
}

impl Service {
    /// The services behind the gateway.
    pub const ALL: [Self; 4] = [Self::Auth, Self::Trading, Self::Revenue, Self::Social];
}

/// Every service's schema and migrations, in the order `wharf migrate` applies them.
pub fn schemas() -> Vec<SchemaMigrations> {
    let mut schemas = wharf_auth::schemas();
    schemas.extend(wharf_trading::schemas());
    schemas.extend(wharf_revenue::schemas());
    schemas.extend(wharf_social::schemas());
    schemas
}

/// The background work of the services started by [`start`] (relays, consumers).
#[derive(Debug)]
pub struct Running {
    stop: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Running {
    /// Resolves when some service's background work (relay, consumers) stops on its own,
    /// which is always a failure (e.g. a consumer whose live config contradicts the declared
    /// one): the process should stop and say why, not serve on half-alive.
    pub async fn failure(&mut self) -> anyhow::Error {
        match self.tasks.join_next().await {
            Some(Ok(Err(err))) => err,
            Some(Ok(Ok(()))) => anyhow::anyhow!("a service's background work stopped by itself"),
            Some(Err(join)) => anyhow::anyhow!("a service task panicked: {join}"),
            None => std::future::pending().await,
        }
    }

    /// Stops the background work and waits for in-flight events to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        while let Some(done) = self.tasks.join_next().await {
            done.context("a service task panicked")??;
        }
        Ok(())
    }
}

/// Builds `services`, registers their gRPC services on `server` (with the echo diagnostics
/// service), and starts their background work.
pub async fn start(
    config: &WharfConfig,
    server: &mut GrpcServer,
    services: &[Service],
) -> anyhow::Result<Running> {
    let nats = nats_client(&config.nats).await?;
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();

    if services.contains(&Service::Gateway) {
        // The gateway forwards what no local service answers: a service beside it on the
        // same port would be reached without the edge's checks.
        anyhow::ensure!(
            services.len() == 1,
            "the gateway runs alone (`wharf serve gateway`), in front of the services"
        );
        let mut gateway = wharf_gateway::App::build(
            wharf_gateway::Deps {
                nats,
                namespace: config.events.namespace(),
                redis: config.redis.clone(),
            },
            config.gateway.clone(),
            &config.tokens,
        )
        .await
        .context("failed to start the gateway")?;
        gateway.register(server).await;
        let token = stop.clone();
        tasks.spawn(async move { Ok(gateway.run_until_stopped(token).await?) });
        return Ok(Running { stop, tasks });
    }
    server.add_service(wharf_runtime::echo::Echo::server());

    if services.contains(&Service::Auth) {
        let auth = wharf_auth::App::build(
            wharf_auth::Deps {
                database: config.database.clone(),
                nats: nats.clone(),
                redis: config.redis.clone(),
                namespace: config.events.namespace(),
                relay: config.relay.clone(),
            },
            config.auth.clone(),
            &config.tokens,
        )
        .await
        .context("failed to start the auth service")?;
        server.add_service(auth.server());
        let token = stop.clone();
        tasks.spawn(async move { Ok(auth.run_until_stopped(token).await?) });
    }
    if services.contains(&Service::Trading) {
        let trading = wharf_trading::App::build(
            wharf_trading::Deps {
                database: config.database.clone(),
                nats: nats.clone(),
                namespace: config.events.namespace(),
                relay: config.relay.clone(),
            },
            config.trading.clone(),
            &config.tokens,
        )
        .await
        .context("failed to start the trading service")?;
        server.add_service(trading.server());
        let token = stop.clone();
        tasks.spawn(async move { Ok(trading.run_until_stopped(token).await?) });
    }
    if services.contains(&Service::Revenue) {
        let revenue = wharf_revenue::App::build(
            wharf_revenue::Deps {
                database: config.database.clone(),
                nats: nats.clone(),
                namespace: config.events.namespace(),
                relay: config.relay.clone(),
            },
            config.revenue.clone(),
            &config.tokens,
        )
        .await
        .context("failed to start the revenue service")?;
        server.add_service(revenue.server());
        let token = stop.clone();
        tasks.spawn(async move { Ok(revenue.run_until_stopped(token).await?) });
    }
    if services.contains(&Service::Social) {
        let social = wharf_social::App::build(
            wharf_social::Deps {
                database: config.database.clone(),
                nats: nats.clone(),
                namespace: config.events.namespace(),
                relay: config.relay.clone(),
            },
            config.social.clone(),
            &config.tokens,
        )
        .await
        .context("failed to start the social service")?;
        server.add_service(social.server());
        let token = stop.clone();
        tasks.spawn(async move { Ok(social.run_until_stopped(token).await?) });
    }
    Ok(Running { stop, tasks })
}
