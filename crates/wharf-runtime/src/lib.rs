//! What every Wharf service shares, so that each service crate is only its domain.
//!
//! A service binary is: load [`config`] → [`telemetry::init`] → connect pools ([`db`]) and
//! check its schema is current → register its gRPC services on a [`server::GrpcServer`] →
//! [`server::GrpcServer::run_until_stopped`] with [`shutdown::signal`]. The same `App` runs in
//! its own binary and inside `wharf dev`.
//!
//! # Layout
//! - [`config`]: typed, layered configuration (defaults → file → `WHARF_*` env → flags).
//! - [`telemetry`]: tracing subscriber, JSON logs, optional OTLP export, W3C trace context.
//! - [`server`]: the gRPC server every service uses (health, reflection, limits, shedding).
//! - [`service`]: the flags, NATS connection and serve-and-drain every service binary shares.
//! - [`shutdown`]: SIGINT/SIGTERM handling with a second-signal escape hatch.
//! - [`db`]: PostgreSQL pools, per-service schemas, migrations and the schema-current check.
//! - [`echo`]: the diagnostics echo service.
#![forbid(unsafe_code)]

pub mod config;
pub mod db;
pub mod echo;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod telemetry;

pub use config::{ConfigError, ConfigLoader, PlatformConfig};
pub use server::{GrpcServer, ServerConfig};
