//! `wharf dev`: the whole platform in one process.
//!
//! Brings the local stack up (unless `--no-stack`), applies migrations, then serves every
//! service on an internal loopback port and the gateway on the public one (`server.listen`),
//! in front of them — as production runs them. Services run the same `App` code here as in
//! their own binaries.

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

    // The services, on a loopback port of their own; they trust the gateway's
    // `x-forwarded-for`, since only it can reach them.
    config.auth.trust_forwarded_for = true;
    let internal_config = wharf_runtime::ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..config.server.clone()
    };
    let mut internal = GrpcServer::bind(&internal_config).await?;
    let mut running = services::start(&config, &mut internal, &services::Service::ALL).await?;
    let upstream = format!("http://{}", internal.local_addr());
    if config.gateway.upstreams.is_empty() {
        for name in ["auth", "trading", "revenue", "social", "echo"] {
            config
                .gateway
                .upstreams
                .insert(name.to_owned(), vec![upstream.clone()]);
        }
    }
    let (stop_internal, internal_stopped) = tokio::sync::oneshot::channel::<()>();
    let internal = tokio::spawn(internal.run_until_stopped(async {
        let _ = internal_stopped.await;
    }));

    let mut public = GrpcServer::bind(&config.server).await?;
    let mut gateway = services::start(&config, &mut public, &[services::Service::Gateway]).await?;
    print_banner(public.local_addr(), &config.gateway.upstreams);

    let stopped = tokio::select! {
        stopped = public.run_until_stopped(wharf_runtime::shutdown::signal()) => stopped?,
        failure = running.failure() => return Err(failure.context("a service failed; wharf dev stops")),
        failure = gateway.failure() => return Err(failure.context("the gateway failed; wharf dev stops")),
    };
    gateway.stop().await?;
    let _ = stop_internal.send(());
    let internal_stopped = internal
        .await
        .context("the services' server task failed")??;
    running.stop().await?;
    match (stopped, internal_stopped) {
        (Stopped::Drained, Stopped::Drained) => println!("wharf dev stopped cleanly"),
        _ => println!("wharf dev stopped after the grace period; some calls were cut"),
    }
    Ok(())
}

fn print_banner(addr: SocketAddr, upstreams: &std::collections::BTreeMap<String, Vec<String>>) {
    println!("wharf dev: the gateway, in front of every service");
    println!("wharf dev listening on {addr}");
    for (name, endpoints) in upstreams {
        println!("  upstream {name:<8} {}", endpoints.join(", "));
    }
    println!("  events   GET http://{addr}/v1/events (server-sent events)");
    println!("  health   grpc.health.v1.Health");
    println!("  reflect  grpc.reflection.v1.ServerReflection");
    println!("try:");
    println!("  grpcurl -plaintext {addr} list");
    println!(
        "  grpcurl -plaintext -d '{{\"message\":\"hello\"}}' {addr} wharf.echo.v1.EchoService/Echo"
    );
}
