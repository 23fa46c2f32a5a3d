//! The `[gateway]` section.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wharf_resilience::{BreakerConfig, Limit, RetryConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Upstream addresses by service name: `auth` serves every service of package
    /// `wharf.auth.v1`, and so on. Several addresses are balanced round robin; a service
    /// without an entry answers `UNIMPLEMENTED`. A list, or one string of comma-separated
    /// addresses (handy in `--set gateway.upstreams.auth=http://a:1,http://b:1` and the env).
    #[serde(deserialize_with = "endpoint_lists")]
    pub upstreams: BTreeMap<String, Vec<String>>,
    /// Upper bound on a forwarded call; a shorter client deadline (`grpc-timeout`) wins, and
    /// what is left of it travels upstream.
    #[serde(with = "humantime_serde")]
    pub upstream_timeout: Duration,
    /// Time to open a connection to an upstream.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a session's state read from Redis is trusted: a revoked session's tokens are
    /// refused within this bound (at most 10 s).
    #[serde(with = "humantime_serde")]
    pub session_cache_ttl: Duration,
    /// Verified access tokens remembered (until their expiry), so a busy client's token is
    /// checked once, not on every call.
    pub token_cache_entries: usize,
    /// Take the client address from `x-forwarded-for`; only behind a proxy that overwrites it.
    pub trust_forwarded_for: bool,
    pub limits: GatewayLimits,
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
    pub notifications: NotificationsConfig,
}

fn endpoint_lists<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Endpoints {
        List(Vec<String>),
        Joined(String),
    }
    let raw = BTreeMap::<String, Endpoints>::deserialize(deserializer)?;
    Ok(raw
        .into_iter()
        .map(|(name, endpoints)| {
            let list = match endpoints {
                Endpoints::List(list) => list,
                Endpoints::Joined(joined) => joined
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            };
            (name, list)
        })
        .collect())
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            upstreams: BTreeMap::new(),
            upstream_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
            session_cache_ttl: Duration::from_secs(2),
            token_cache_entries: 100_000,
            trust_forwarded_for: false,
            limits: GatewayLimits::default(),
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            notifications: NotificationsConfig::default(),
        }
    }
}

/// Rate limits shared by every gateway instance (GCRA in Redis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayLimits {
    /// Every call of one authenticated user, whichever instance serves it.
    pub per_user: Limit,
    /// Every call from one client address, public calls included.
    pub per_address: Limit,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            per_user: Limit::new(200, Duration::from_secs(10)),
            per_address: Limit::new(1000, Duration::from_secs(10)),
        }
    }
}

/// Real-time notifications (`notify.user.<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// How long notifications are kept for clients that reconnect with their last event id.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Notifications waiting for one slow client; when full, its stream is closed with a
    /// reconnect hint (it resumes from its last event id) instead of slowing everyone.
    pub subscriber_buffer: usize,
    /// The most notifications replayed to one reconnecting client.
    pub replay_limit: usize,
    /// Streams and SSE connections are told to reconnect after this on shutdown.
    #[serde(with = "humantime_serde")]
    pub reconnect_after: Duration,
    /// A comment line sent on idle SSE connections, so proxies keep them open.
    #[serde(with = "humantime_serde")]
    pub sse_keepalive: Duration,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(24 * 3600),
            subscriber_buffer: 256,
            replay_limit: 1000,
            reconnect_after: Duration::from_secs(1),
            sse_keepalive: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayConfigError {
    #[error("gateway.session_cache_ttl must be at most 10s: revoked sessions must die quickly")]
    SessionCacheTooLong,
    #[error("gateway.upstreams.{service}: {reason}")]
    Upstream { service: String, reason: String },
    #[error("gateway.limits.{0}: burst and period must be positive")]
    BadLimit(&'static str),
    #[error("gateway.notifications.subscriber_buffer must be at least 1")]
    NoBuffer,
}

impl GatewayConfig {
    pub fn validate(&self) -> Result<(), GatewayConfigError> {
        if self.session_cache_ttl > Duration::from_secs(10) {
            return Err(GatewayConfigError::SessionCacheTooLong);
        }
        for (service, endpoints) in &self.upstreams {
            let bad = |reason: String| GatewayConfigError::Upstream {
                service: service.clone(),
                reason,
            };
            if endpoints.is_empty() {
                return Err(bad("needs at least one address".to_owned()));
            }
            for endpoint in endpoints {
                let uri: http::Uri = endpoint
                    .parse()
                    .map_err(|err| bad(format!("{endpoint:?} is not a URI: {err}")))?;
                if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                    return Err(bad(format!("{endpoint:?} must look like http://host:port")));
                }
            }
        }
        for (name, limit) in [
            ("per_user", self.limits.per_user),
            ("per_address", self.limits.per_address),
        ] {
            if limit.burst == 0 || limit.period.is_zero() {
                return Err(GatewayConfigError::BadLimit(name));
            }
        }
        if self.notifications.subscriber_buffer == 0 {
            return Err(GatewayConfigError::NoBuffer);
        }
        Ok(())
    }
}
