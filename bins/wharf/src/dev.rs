//! `wharf dev`: the whole platform in one process.
//!
//! Brings the local stack up (unless `--no-stack`), applies migrations, then serves every
//! implemented service on one port with health and reflection. Services run the same `App`
//! code here as in their own binaries.

use std::net::SocketAddr;

use anyhow::Context;
use wharf_runtime::GrpcServer;
use wharf_runtime::config::ConfigLoader;
use wharf_runtime::server::Stopped;

use crate::config::WharfConfig;

use crate::ConfigArgs;
use crate::{migrate, services, stack};

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address to serve on (overrides server.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Use the configured NATS / Redis / PostgreSQL as they are instead of `wharf stack up`.
    #[arg(long)]
    no_stack: bool,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let mut loader = ConfigLoader::defaults::<WharfConfig>();
    if !args.no_stack {
        // The stack's settings sit just above the defaults: a file, the env and flags still win.
        let env = stack::up_and_read_env().context("failed to bring the local stack up")?;
        for (key, setting) in [
            ("DATABASE_URL", "database.url"),
            ("NATS_URL", "nats.url"),
            ("REDIS_URL", "redis.url"),
        ] {
            if let Some(value) = env.get(key) {
                loader = loader.set(&format!("{setting}={value}"))?;
            }
        }
    }
    let mut loader = loader
        .file(args.config.config.as_deref())?
        .env()
        .set_all(args.config.overrides.iter().map(String::as_str))?;
    if let Some(listen) = args.listen {
        loader = loader.set(&format!("server.listen={listen}"))?;
    }
    let mut config: WharfConfig = loader.extract()?;
    let _telemetry = wharf_runtime::telemetry::init(&config.telemetry, "wharf-dev")?;
    if config.tokens.with_development_key() {
        println!(
            "wharf dev: no [tokens.keys] configured; signing with a generated development key (tokens die with this process)"
        );
    }

    migrate::migrate_all(&config.database).await?;

    let mut server = GrpcServer::bind(&config.server).await?;
    let mut running = services::start(&config, &mut server, &services::Service::ALL).await?;
    print_banner(server.local_addr(), server.service_names());

    let stopped = tokio::select! {
        stopped = server.run_until_stopped(wharf_runtime::shutdown::signal()) => stopped?,
        failure = running.failure() => return Err(failure.context("a service failed; wharf dev stops")),
    };
    running.stop().await?;
    match stopped {
        Stopped::Drained => println!("wharf dev stopped cleanly"),
        Stopped::GraceElapsed => {
            println!("wharf dev stopped after the grace period; some calls were cut");
        }
    }
    Ok(())
}

fn print_banner(addr: SocketAddr, services: &[&str]) {
    println!("wharf dev listening on {addr}");
    for service in services {
        println!("  service  {service}");
    }
    println!("  health   grpc.health.v1.Health");
    println!("  reflect  grpc.reflection.v1.ServerReflection");
    println!("try:");
    println!("  grpcurl -plaintext {addr} list");
    println!(
        "  grpcurl -plaintext -d '{{\"message\":\"hello\"}}' {addr} wharf.echo.v1.EchoService/Echo"
    );
}
