//! The registry of services `wharf dev` and `wharf migrate` know about.
//!
//! Each service crate contributes its schema migrations and its `App`; this is the one place
//! to touch when a service is added.

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wharf_runtime::GrpcServer;
use wharf_runtime::db::SchemaMigrations;

use crate::config::{WharfConfig, nats_client};

/// Every service's schema and migrations, in the order `wharf migrate` applies them.
pub fn schemas() -> Vec<SchemaMigrations> {
    wharf_auth::schemas()
}

/// The background work of the services started by [`start`] (relays, consumers).
#[derive(Debug)]
pub struct Running {
    stop: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Running {
    /// Stops the background work and waits for in-flight events to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        while let Some(done) = self.tasks.join_next().await {
            done.context("a service task panicked")??;
        }
        Ok(())
    }
}

/// Builds every implemented service, registers its gRPC services on `server`, and starts its
/// background work.
pub async fn start(config: &WharfConfig, server: &mut GrpcServer) -> anyhow::Result<Running> {
    server.add_service(wharf_runtime::echo::Echo::server());

    let nats = nats_client(&config.nats).await?;
    let auth = wharf_auth::App::build(
        wharf_auth::Deps {
            database: config.database.clone(),
            nats,
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

    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let token = stop.clone();
    tasks.spawn(async move { Ok(auth.run_until_stopped(token).await?) });
    Ok(Running { stop, tasks })
}
