//! The configuration `wharf` reads: the platform sections plus the relay and the event
//! namespace. Services add their sections here as they land.

use serde::{Deserialize, Serialize};
use wharf_events::Namespace;
use wharf_outbox::RelayConfig;
use wharf_runtime::config::{NatsConfig, RedisConfig};
use wharf_runtime::db::DatabaseConfig;
use wharf_runtime::server::ServerConfig;
use wharf_runtime::telemetry::TelemetryConfig;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WharfConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub database: DatabaseConfig,
    pub nats: NatsConfig,
    pub redis: RedisConfig,
    pub relay: RelayConfig,
    pub events: EventsConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Prefix for every stream and subject; empty in production.
    pub namespace: Option<String>,
}

impl EventsConfig {
    pub fn namespace(&self) -> Namespace {
        match self.namespace.as_deref() {
            Some(prefix) if !prefix.is_empty() => Namespace::new(prefix),
            _ => Namespace::root(),
        }
    }
}

/// A NATS client that reconnects forever, as every long-running command needs.
pub async fn nats_client(config: &NatsConfig) -> anyhow::Result<async_nats::Client> {
    use anyhow::Context;
    async_nats::ConnectOptions::new()
        .connection_timeout(config.connect_timeout)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(&config.url)
        .await
        .with_context(|| format!("failed to connect to NATS at {}", config.url))
}
