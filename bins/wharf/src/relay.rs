//! `wharf relay`: the outbox relay as a process of its own, for the schemas named.
//!
//! Services run the relay inside their `App`; this command runs it standalone (one Deployment
//! per producing schema, scaled freely: relays share the buckets of a schema between them).

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use wharf_events::Topology;
use wharf_outbox::Relay;

use crate::ConfigArgs;
use crate::config::{WharfConfig, nats_client};

#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Schema whose outbox to publish (repeatable).
    #[arg(long = "schema", required = true)]
    schemas: Vec<String>,
}

pub async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let config: WharfConfig =
        wharf_runtime::config::load(args.config.config.as_deref(), &args.config.overrides)?;
    let _telemetry = wharf_runtime::telemetry::init(&config.telemetry, "wharf-relay")?;
    let client = nats_client(&config.nats).await?;
    let namespace = config.events.namespace();
    Topology::declared(namespace.clone())
        .apply(&async_nats::jetstream::new(client.clone()))
        .await
        .context("the JetStream topology is not usable")?;

    let stop = CancellationToken::new();
    let mut relays = Vec::new();
    for schema in &args.schemas {
        let pool = wharf_runtime::db::connect_lazy(&config.database, schema)?;
        let relay = Relay::new(
            pool,
            client.clone(),
            namespace.clone(),
            schema,
            config.relay.clone(),
        );
        relays.push(tokio::spawn(relay.run(stop.clone())));
    }
    println!(
        "wharf relay running for schemas {}",
        args.schemas.join(", ")
    );

    wharf_runtime::shutdown::signal().await;
    stop.cancel();
    for relay in relays {
        relay.await?;
    }
    println!("wharf relay stopped");
    Ok(())
}
