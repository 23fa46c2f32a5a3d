//! The upstreams: for each service name, its endpoints, each a lazy HTTP/2 channel behind its
//! own circuit breaker, balanced round robin over those whose circuit admits calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tower::{BoxError, Layer, Service, ServiceExt};
use wharf_resilience::breaker::{Breaker, GrpcFailure};
use wharf_resilience::deadline::PropagateDeadline;
use wharf_resilience::{
    BreakerConfig, BreakerState, CircuitBreaker, CircuitBreakerLayer, CircuitOpen,
    PropagateDeadlineLayer,
};

type EndpointService = Breaker<PropagateDeadline<Channel>, GrpcFailure>;

#[derive(Debug, Clone)]
struct UpstreamEndpoint {
    address: String,
    service: EndpointService,
    breaker: CircuitBreaker,
    channel: Channel,
}

/// One service's endpoints.
#[derive(Debug)]
pub struct Upstream {
    name: Arc<str>,
    endpoints: Vec<UpstreamEndpoint>,
    next: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
#[error("upstream {upstream}: {address:?} is not a usable address: {source}")]
pub struct UpstreamError {
    upstream: String,
    address: String,
    #[source]
    source: tonic::transport::Error,
}

/// How upstream connections are made.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    pub connect_timeout: Duration,
    pub breaker: BreakerConfig,
}

impl Upstream {
    /// Channels connect on first use and reconnect by themselves.
    pub fn new(
        name: &str,
        addresses: &[String],
        options: ConnectOptions,
    ) -> Result<Self, UpstreamError> {
        let endpoints = addresses
            .iter()
            .map(|address| {
                let channel = Endpoint::from_shared(address.clone())
                    .map_err(|source| UpstreamError {
                        upstream: name.to_owned(),
                        address: address.clone(),
                        source,
                    })?
                    .connect_timeout(options.connect_timeout)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(30))
                    .keep_alive_while_idle(true)
                    .connect_lazy();
                let breaker = CircuitBreaker::new(format!("{name}@{address}"), options.breaker);
                let service = CircuitBreakerLayer::new(breaker.clone())
                    .layer(PropagateDeadlineLayer.layer(channel.clone()));
                Ok(UpstreamEndpoint {
                    address: address.clone(),
                    service,
                    breaker,
                    channel,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            name: Arc::from(name),
            endpoints,
            next: AtomicUsize::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next endpoint, round robin, skipping those whose circuit is open.
    fn pick(&self) -> Option<&UpstreamEndpoint> {
        let count = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| &self.endpoints[(start + offset) % count])
            .find(|endpoint| endpoint.breaker.would_admit())
    }

    /// Each endpoint's address, circuit state and raw channel (for health probes).
    pub fn endpoints(&self) -> impl Iterator<Item = (&str, BreakerState, &Channel)> {
        self.endpoints
            .iter()
            .map(|e| (e.address.as_str(), e.breaker.state(), &e.channel))
    }
}

/// Every upstream by service name.
pub type Upstreams = BTreeMap<String, Arc<Upstream>>;

pub fn connect_all(
    config: &BTreeMap<String, Vec<String>>,
    options: ConnectOptions,
) -> Result<Upstreams, UpstreamError> {
    config
        .iter()
        .map(|(name, addresses)| {
            Ok((
                name.clone(),
                Arc::new(Upstream::new(name, addresses, options)?),
            ))
        })
        .collect()
}

/// An upstream as a tower service: each call goes to the next endpoint whose circuit admits
/// it, or fails at once with [`CircuitOpen`] when none does.
#[derive(Debug, Clone)]
pub struct UpstreamService {
    upstream: Arc<Upstream>,
}

impl UpstreamService {
    pub fn new(upstream: Arc<Upstream>) -> Self {
        Self { upstream }
    }
}

impl Service<http::Request<Body>> for UpstreamService {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<http::Response<Body>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call readies its endpoint's channel itself (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let Some(endpoint) = self.upstream.pick() else {
            let open = CircuitOpen {
                upstream: self.upstream.name.to_string(),
            };
            return Box::pin(std::future::ready(Err(open.into())));
        };
        let service = endpoint.service.clone();
        Box::pin(service.oneshot(request))
    }
}
