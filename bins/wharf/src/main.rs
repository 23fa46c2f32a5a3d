//! `wharf`, the operator CLI.
//!
//! - `wharf dev`: the whole platform in one process, for development.
//! - `wharf stack up|down|status|env`: the local NATS / Redis / PostgreSQL stack.
//! - `wharf migrate`: applies every service's migrations (the Kubernetes Job step).
//! - `wharf relay`: the outbox relay as a process of its own.
//! - `wharf dlq list|show|replay|discard`: the dead-letter stream.
//! - `wharf serve SERVICE...`: chosen services in one process, as their own binaries run them.
//! - `wharf reconcile`: checks the declared invariants, repairs what it can, reports the rest.
#![forbid(unsafe_code)]

mod config;
mod dev;
mod dlq;
mod migrate;
mod reconcile;
mod relay;
mod serve;
mod services;
mod stack;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "wharf", version, about = "Operate the Wharf event platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Flags every command that reads configuration understands.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// TOML config file (defaults → file → WHARF_<SECTION>__<KEY> env → --set).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Overrides one key, e.g. --set server.listen=127.0.0.1:50051 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub overrides: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs every implemented service in one process, with the stack brought up if needed.
    Dev(dev::DevArgs),
    /// Manages the local backing services (deploy/local/stack.sh).
    Stack {
        #[command(subcommand)]
        action: stack::StackAction,
    },
    /// Applies every service's pending migrations, then exits.
    Migrate {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Publishes committed outbox rows of the given schemas to JetStream until stopped.
    Relay(relay::RelayArgs),
    /// Operates the dead-letter stream.
    Dlq(dlq::DlqArgs),
    /// Runs the named services in one process (no stack, no migrations).
    Serve(serve::ServeArgs),
    /// Checks every invariant once, repairs what it can, reports the rest (exit 3).
    Reconcile(reconcile::ReconcileArgs),
}

/// mimalloc: a service's allocations cross threads (a request is decoded on one worker and
/// freed on another), where glibc's per-arena locks cost more than the work; `wharf-bench`
/// measures with the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Stack { action } => stack::run(&action).context("failed to run the stack command"),
        Command::Migrate { config } => migrate::run(&config).await,
        Command::Relay(args) => relay::run(args).await,
        Command::Dlq(args) => dlq::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Reconcile(args) => reconcile::run(args).await,
    }
}
