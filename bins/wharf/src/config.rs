//! The configuration `wharf` reads: the platform sections, the relay, the event namespace, and
//! each service's own section.

use serde::{Deserialize, Serialize};
use wharf_auth::AuthConfig;
use wharf_events::EventsConfig;
use wharf_gateway::GatewayConfig;
use wharf_outbox::RelayConfig;
use wharf_revenue::RevenueConfig;
use wharf_runtime::config::{NatsConfig, RedisConfig};
use wharf_runtime::db::DatabaseConfig;
use wharf_runtime::server::ServerConfig;
use wharf_runtime::telemetry::TelemetryConfig;
use wharf_social::SocialConfig;
use wharf_tokens::TokensConfig;
use wharf_trading::TradingConfig;

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
    pub tokens: TokensConfig,
    pub auth: AuthConfig,
    pub trading: TradingConfig,
    pub revenue: RevenueConfig,
    pub social: SocialConfig,
    pub gateway: GatewayConfig,
}

/// A NATS client that reconnects forever, as every long-running command needs.
pub use wharf_runtime::service::connect_nats as nats_client;
