//! The gateway as one unit: what `gateway` and `wharf dev` both run.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as ProbeStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;
use wharf_events::Namespace;
use wharf_resilience::{BreakerState, GrpcRetry, RateLimiter};
use wharf_runtime::GrpcServer;
use wharf_runtime::config::RedisConfig;
use wharf_tokens::session::ActiveSessions;
use wharf_tokens::{KeyConfigError, TokensConfig};

use crate::config::{GatewayConfig, GatewayConfigError};
use crate::edge::{Edge, EdgeParts};
use crate::notify::grpc::NotificationsHandlers;
use crate::notify::sse::SseRoute;
use crate::notify::{Hub, HubError};
use crate::proxy::Proxy;
use crate::routes::{RouteError, RouteTable};
use crate::upstream::{ConnectOptions, UpstreamError, Upstreams, connect_all};

/// How often each upstream endpoint's health is probed.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// The path of the server-sent events route.
pub const EVENTS_PATH: &str = "/v1/events";

/// What the platform gives the gateway.
#[derive(Debug, Clone)]
pub struct Deps {
    pub nats: async_nats::Client,
    pub namespace: Namespace,
    pub redis: RedisConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] GatewayConfigError),
    #[error(transparent)]
    Keys(#[from] KeyConfigError),
    #[error(transparent)]
    Routes(#[from] RouteError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("gateway.upstreams.{0}: no contract has package wharf.{0}.v1")]
    UnknownUpstream(String),
    #[error("cannot configure Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Notifications(#[from] HubError),
}

#[derive(Debug)]
pub struct App {
    proxy: Arc<Proxy>,
    hub: Arc<Hub>,
    edge: Arc<Edge>,
    routes: RouteTable,
    upstreams: Upstreams,
    config: GatewayConfig,
    closing: CancellationToken,
    health: Option<HealthReporter>,
}

impl App {
    /// Checks the configuration and keys (verification only), and sets up the `NOTIFY` stream.
    pub async fn build(
        deps: Deps,
        config: GatewayConfig,
        tokens: &TokensConfig,
    ) -> Result<Self, AppError> {
        config.validate()?;
        let routes = RouteTable::from_contracts()?;
        let known: Vec<&str> = routes.upstreams().collect();
        if let Some(unknown) = config
            .upstreams
            .keys()
            .find(|name| !known.contains(&name.as_str()))
        {
            return Err(AppError::UnknownUpstream(unknown.clone()));
        }
        let tokens = Arc::new(tokens.tokens()?);
        let redis = deps.redis.connect_lazy()?;
        let edge = Arc::new(Edge::new(EdgeParts {
            tokens,
            sessions: ActiveSessions::new(redis.clone(), &deps.redis.key_prefix),
            limiter: RateLimiter::new(redis, deps.redis.key_prefix.clone()),
            limits: config.limits.clone(),
            token_cache_entries: config.token_cache_entries,
            session_cache_ttl: config.session_cache_ttl,
            trust_forwarded_for: config.trust_forwarded_for,
        }));
        let upstreams = connect_all(
            &config.upstreams,
            ConnectOptions {
                connect_timeout: config.connect_timeout,
                breaker: config.breaker,
            },
        )?;
        let closing = CancellationToken::new();
        let hub = Arc::new(
            Hub::new(
                deps.nats,
                &deps.namespace,
                config.notifications.clone(),
                closing.clone(),
            )
            .await?,
        );
        let proxy = Arc::new(Proxy {
            routes: routes.clone(),
            upstreams: upstreams.clone(),
            edge: Arc::clone(&edge),
            retry: GrpcRetry::new(config.retry),
            upstream_timeout: config.upstream_timeout,
        });
        Ok(Self {
            proxy,
            hub,
            edge,
            routes,
            upstreams,
            config,
            closing,
            health: None,
        })
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn edge(&self) -> &Arc<Edge> {
        &self.edge
    }

    /// Serves the gateway's own API and the SSE route on `server`, and forwards every other
    /// call; streams end with a reconnect hint when the server starts draining. Probes the
    /// upstreams once, so that health answers for every routed service from the start.
    pub async fn register(&mut self, server: &mut GrpcServer) {
        server.add_service(
            NotificationsHandlers::new(Arc::clone(&self.hub), Arc::clone(&self.edge)).server(),
        );
        let proxy = Arc::clone(&self.proxy);
        let sse = SseRoute {
            hub: Arc::clone(&self.hub),
            edge: Arc::clone(&self.edge),
            keepalive: self.config.notifications.sse_keepalive,
            reconnect_after: self.config.notifications.reconnect_after,
        };
        server.extend_router(move |router| {
            router
                .route(
                    EVENTS_PATH,
                    axum::routing::get(move |request: axum::extract::Request| {
                        let sse = sse.clone();
                        async move { sse.handle(request).await }
                    }),
                )
                .fallback(move |request: axum::extract::Request| {
                    let proxy = Arc::clone(&proxy);
                    async move {
                        let request = request.map(tonic::body::Body::new);
                        proxy.handle(request).await.map(axum::body::Body::new)
                    }
                })
        });
        let draining = server.draining();
        let closing = self.closing.clone();
        tokio::spawn(async move {
            draining.cancelled().await;
            closing.cancel();
        });
        let health = server.health();
        probe_once(&health, &self.routes, &self.upstreams).await;
        self.health = Some(health);
    }

    /// Reads notifications and probes the upstreams' health until `shutdown`.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let hub = Arc::clone(&self.hub).run(shutdown.clone());
        let probes = probe_health(
            self.health.clone(),
            self.routes.clone(),
            self.upstreams.clone(),
            shutdown.clone(),
        );
        let closing = self.closing.clone();
        let (hub, ()) = tokio::join!(
            async move {
                let result = hub.await;
                closing.cancel();
                result
            },
            probes
        );
        Ok(hub?)
    }
}

/// Reports each routed service SERVING while at least one of its endpoints answers its health
/// check and its circuit is not open, so `grpc.health.v1` on the gateway covers the whole
/// surface.
async fn probe_health(
    health: Option<HealthReporter>,
    routes: RouteTable,
    upstreams: Upstreams,
    stop: CancellationToken,
) {
    let Some(health) = health else { return };
    let mut ticker = tokio::time::interval(HEALTH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        probe_once(&health, &routes, &upstreams).await;
    }
}

/// One round of probes, every upstream at once.
async fn probe_once(health: &HealthReporter, routes: &RouteTable, upstreams: &Upstreams) {
    let probes = upstreams.iter().map(|(name, upstream)| async move {
        let mut serving = false;
        for (address, state, channel) in upstream.endpoints() {
            if state == BreakerState::Open {
                continue;
            }
            let mut client = HealthClient::new(channel.clone());
            let probe = tokio::time::timeout(
                HEALTH_INTERVAL / 2,
                client.check(HealthCheckRequest {
                    service: String::new(),
                }),
            )
            .await;
            match probe {
                Ok(Ok(answer)) if answer.get_ref().status == ProbeStatus::Serving as i32 => {
                    serving = true;
                    break;
                }
                outcome => {
                    tracing::debug!(upstream = %name, %address, ?outcome, "health probe failed");
                }
            }
        }
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in routes.services_of(name) {
            health.set_service_status(&service, status).await;
        }
    });
    futures::future::join_all(probes).await;
}
