//! The gRPC server every Wharf service runs on.
//!
//! [`GrpcServer`] binds first (port 0 works, so tests run the real server), collects the
//! service's gRPC services, and serves them with everything a production endpoint needs:
//! - `grpc.health.v1` (every registered service plus the empty name for the whole server) and
//!   server reflection v1 (and v1alpha for older clients), so `grpcurl` needs no proto files;
//! - message size limits applied to every service ([`wharf_proto::ServiceLimits`]);
//! - a request deadline: the client's `grpc-timeout` or the configured timeout, whichever is
//!   sooner, answered with `DEADLINE_EXCEEDED` (the handler future is dropped, so an open
//!   transaction rolls back);
//! - a server-wide concurrency limit that sheds excess calls at once with `RESOURCE_EXHAUSTED`
//!   and a retry hint, instead of queueing them;
//! - HTTP/2 and TCP keepalive;
//! - graceful shutdown: health flips to NOT_SERVING (for `shutdown_drain_delay`, so load
//!   balancers notice), then new connections are refused and in-flight calls finish within the
//!   grace period; the rest are cut.
//!
//! # Layout
//! - [`layers`]: the deadline, load-shedding and tracing tower layers.

pub mod layers;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::{Routes, RoutesBuilder};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::ServiceBuilder;
use wharf_proto::ServiceLimits;

use self::layers::{DeadlineLayer, LoadShedLayer, MessageSizeLayer, TraceLayer};

/// How long cut calls get to send their `UNAVAILABLE` answer before the server task is aborted.
const CUT_LINGER: Duration = Duration::from_secs(1);

/// Limits and timings of a gRPC server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Largest request message accepted; larger ones get `RESOURCE_EXHAUSTED`.
    pub max_decoding_message_bytes: usize,
    /// Largest response message sent.
    pub max_encoding_message_bytes: usize,
    /// Upper bound on any call; a shorter client deadline (`grpc-timeout`) wins.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Calls served at once across all connections; calls beyond are shed immediately. A
    /// streaming call counts until its response starts, not while it streams.
    pub max_concurrent_requests: usize,
    /// HTTP/2 streams one connection may open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_concurrent_streams: u32,
    /// Retry hint sent with a shed call.
    #[serde(with = "humantime_serde")]
    pub shed_retry_after: Duration,
    #[serde(with = "humantime_serde")]
    pub http2_keepalive_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub http2_keepalive_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub tcp_keepalive: Duration,
    /// After a shutdown signal, how long health reports NOT_SERVING while the server still
    /// accepts calls, so load balancers stop routing before connections are refused.
    #[serde(with = "humantime_serde")]
    pub shutdown_drain_delay: Duration,
    /// How long in-flight calls may run once the server stops accepting.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            max_decoding_message_bytes: 4 * 1024 * 1024,
            max_encoding_message_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 1024,
            max_concurrent_streams: 4096,
            shed_retry_after: Duration::from_millis(100),
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
            tcp_keepalive: Duration::from_secs(60),
            shutdown_drain_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Why the server stopped other than by a clean shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("the server task panicked or was cancelled: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Reflection over every contract, the health service, and the `google.rpc` error details, so
/// that `grpcurl` can also decode the field violations in an `INVALID_ARGUMENT`.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(wharf_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

/// How a server run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every in-flight call finished within the grace period.
    Drained,
    /// The grace period ran out; remaining calls were cut.
    GraceElapsed,
}

/// Adds plain HTTP routes or a fallback to the server's router (see
/// [`GrpcServer::extend_router`]).
type RouterExtension = Box<dyn FnOnce(axum::Router) -> axum::Router + Send>;

/// A bound gRPC server, collecting services until it runs.
pub struct GrpcServer {
    config: ServerConfig,
    listener: TcpListener,
    routes: RoutesBuilder,
    names: Vec<&'static str>,
    health: HealthReporter,
    extension: Option<RouterExtension>,
    draining: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer")
            .field("config", &self.config)
            .field("listener", &self.listener)
            .field("names", &self.names)
            .field("extended", &self.extension.is_some())
            .finish_non_exhaustive()
    }
}

impl GrpcServer {
    /// Binds the listener now, so the port is known (and taken) before services are added.
    pub async fn bind(config: &ServerConfig) -> Result<Self, ServerError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Ok(Self {
            config: config.clone(),
            listener,
            routes: RoutesBuilder::default(),
            names: Vec::new(),
            health: HealthReporter::new(),
            extension: None,
            draining: tokio_util::sync::CancellationToken::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Health of every service on this server, for a service that wants to report itself
    /// NOT_SERVING while a dependency is down.
    pub fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Registers a generated gRPC server, with the configured message size limits.
    pub fn add_service<S>(&mut self, service: S) -> &mut Self
    where
        S: ServiceLimits
            + NamedService
            + tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let limited = service.with_limits(
            self.config.max_decoding_message_bytes,
            self.config.max_encoding_message_bytes,
        );
        self.routes.add_service(limited);
        self.names.push(S::NAME);
        self
    }

    /// Cancelled when the server starts draining (the shutdown signal arrived): long-lived
    /// streams end themselves here, with a reconnect hint, so that the drain can finish.
    pub fn draining(&self) -> tokio_util::sync::CancellationToken {
        self.draining.clone()
    }

    /// Lets `extend` add routes to the server's router once every service is registered: a
    /// fallback for calls no registered service answers (the gateway's proxy), or plain HTTP
    /// routes (server-sent events). HTTP/1.1 is then accepted as well as HTTP/2, so that
    /// `curl` reaches those routes; the server-wide layers (deadline, shedding, tracing) apply
    /// to them too.
    pub fn extend_router(
        &mut self,
        extend: impl FnOnce(axum::Router) -> axum::Router + Send + 'static,
    ) -> &mut Self {
        self.extension = Some(Box::new(extend));
        self
    }

    /// Names of the registered services, e.g. for a start-up banner.
    pub fn service_names(&self) -> &[&'static str] {
        &self.names
    }

    /// Serves until `shutdown` resolves, then drains within the grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Stopped, ServerError> {
        let Self {
            config,
            listener,
            mut routes,
            names,
            health,
            extension,
            draining,
        } = self;
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(health.clone()),
        );

        for name in &names {
            health
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        health.set_service_status("", ServingStatus::Serving).await;

        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        routes
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let mut routes: Routes = routes.routes();
        let http1 = extension.is_some();
        if let Some(extend) = extension {
            routes = Routes::from(extend(routes.into_axum_router()));
        }

        let cut = tokio_util::sync::CancellationToken::new();
        let layers = ServiceBuilder::new()
            .layer(TraceLayer)
            .layer(LoadShedLayer::new(
                config.max_concurrent_requests,
                config.shed_retry_after,
            ))
            .layer(DeadlineLayer::new(config.request_timeout, cut.clone()))
            .layer(MessageSizeLayer::new(config.max_decoding_message_bytes));

        let (stop_accepting, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let incoming = TcpListenerStream::new(listener);
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(config.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(config.http2_keepalive_timeout))
            .tcp_keepalive(Some(config.tcp_keepalive))
            .tcp_nodelay(true)
            .accept_http1(http1)
            .max_concurrent_streams(config.max_concurrent_streams)
            .layer(layers)
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            });
        let mut serving = tokio::spawn(server);

        tokio::select! {
            ended = &mut serving => {
                // The server stopped on its own: that is always a failure.
                ended??;
                return Ok(Stopped::Drained);
            }
            () = shutdown => {}
        }

        // Streams end with a reconnect hint; load balancers stop routing; then stop accepting
        // and drain.
        draining.cancel();
        for name in &names {
            health
                .set_service_status(*name, ServingStatus::NotServing)
                .await;
        }
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        if !config.shutdown_drain_delay.is_zero() {
            tracing::info!(delay = ?config.shutdown_drain_delay, "reporting NOT_SERVING before refusing connections");
            tokio::time::sleep(config.shutdown_drain_delay).await;
        }
        tracing::info!(grace = ?config.shutdown_grace, "draining in-flight calls");
        let _ = stop_accepting.send(());

        match tokio::time::timeout(config.shutdown_grace, &mut serving).await {
            Ok(ended) => {
                ended??;
                tracing::info!("server drained");
                Ok(Stopped::Drained)
            }
            Err(_) => {
                tracing::warn!(grace = ?config.shutdown_grace, "grace period elapsed; cutting remaining calls");
                // Cut calls answer UNAVAILABLE; their connections then close, and the server
                // task ends. Abort it if a connection still lingers.
                cut.cancel();
                if tokio::time::timeout(CUT_LINGER, &mut serving)
                    .await
                    .is_err()
                {
                    serving.abort();
                }
                Ok(Stopped::GraceElapsed)
            }
        }
    }
}
