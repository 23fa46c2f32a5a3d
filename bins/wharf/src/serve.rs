//! `wharf serve SERVICE...`: the named services in one process, as their own binaries would
//! run them — no stack, no migrations (a schema that is behind stops the start), real keys.

use std::net::SocketAddr;

use wharf_runtime::GrpcServer;
use wharf_runtime::config::ConfigLoader;
use wharf_runtime::server::Stopped;

use crate::ConfigArgs;
use crate::config::WharfConfig;
use crate::services::{self, Service};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The services to run.
    #[arg(required = true, value_enum)]
    services: Vec<Service>,
    #[command(flatten)]
    config: ConfigArgs,
    /// Address to serve on (overrides server.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut loader = ConfigLoader::defaults::<WharfConfig>()
        .file(args.config.config.as_deref())?
        .env()
        .set_all(args.config.overrides.iter().map(String::as_str))?;
    if let Some(listen) = args.listen {
        loader = loader.set(&format!("server.listen={listen}"))?;
    }
    let config: WharfConfig = loader.extract()?;
    let _telemetry = wharf_runtime::telemetry::init(&config.telemetry, "wharf-serve")?;
    let mut server = GrpcServer::bind(&config.server).await?;
    let mut running = services::start(&config, &mut server, &args.services).await?;
    println!("wharf serve listening on {}", server.local_addr());
    let stopped = tokio::select! {
        stopped = server.run_until_stopped(wharf_runtime::shutdown::signal()) => stopped?,
        failure = running.failure() => return Err(failure.context("a service failed; wharf serve stops")),
    };
    running.stop().await?;
    match stopped {
        Stopped::Drained => println!("wharf serve stopped cleanly"),
        Stopped::GraceElapsed => println!("wharf serve stopped after the grace period"),
    }
    Ok(())
}
