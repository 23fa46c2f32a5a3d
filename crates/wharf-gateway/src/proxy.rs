//! Forwarding a call: route → authenticate → rate limit → forward (with deadline, retries
//! for idempotent calls, and the upstream's circuit breakers) → the upstream's answer as is.
//!
//! Bodies stream through untouched (the gateway never decodes a message), so every call kind
//! works and a response's trailers reach the client. Only a unary idempotent request is read
//! into memory first — that is what makes it replayable by the retry policy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;
use tower::retry::Retry;
use tower::{BoxError, ServiceExt};
use wharf_resilience::{CircuitOpen, Deadline, DeadlinePassed, GrpcRetry, Idempotent};
use wharf_runtime::server::layers::parse_grpc_timeout;

use crate::edge::Edge;
use crate::routes::RouteTable;
use crate::upstream::{UpstreamService, Upstreams};

/// Client metadata never forwarded: hop-by-hop headers, and the `x-wharf-` namespace, which
/// only the platform itself may set.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
    "grpc-timeout",
];

#[derive(Debug)]
pub struct Proxy {
    pub(crate) routes: RouteTable,
    pub(crate) upstreams: Upstreams,
    pub(crate) edge: Arc<Edge>,
    pub(crate) retry: GrpcRetry,
    pub(crate) upstream_timeout: Duration,
}

fn answer(status: &Status) -> http::Response<Body> {
    status.clone().into_http()
}

impl Proxy {
    /// Handles one call that no local service answered.
    pub async fn handle(&self, request: http::Request<Body>) -> http::Response<Body> {
        match self.forward(request).await {
            Ok(response) => response,
            Err(status) => answer(&status),
        }
    }

    async fn forward(&self, request: http::Request<Body>) -> Result<http::Response<Body>, Status> {
        let path = request.uri().path();
        let route = self
            .routes
            .get(path)
            .ok_or_else(|| Status::unimplemented(format!("unknown method {path}")))?
            .clone();
        let upstream = self.upstreams.get(&*route.upstream).ok_or_else(|| {
            Status::unimplemented(format!("{} is not served here", route.upstream))
        })?;

        let peer = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr);
        let address = self.edge.client_address(request.headers(), peer);
        let identity = if route.public {
            None
        } else {
            Some(self.edge.authenticate(request.headers()).await?)
        };
        self.edge.admit(identity.as_ref(), &address).await?;

        let budget = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map_or(self.upstream_timeout, |client| {
                client.min(self.upstream_timeout)
            });
        let deadline = Deadline(Instant::now() + budget);

        let (parts, body) = request.into_parts();
        let mut outgoing = http::Request::builder()
            .method(parts.method)
            .uri(parts.uri)
            .version(parts.version)
            .body(())
            .map_err(|_| Status::invalid_argument("malformed request"))?;
        let headers = outgoing.headers_mut();
        for (name, value) in &parts.headers {
            let name_str = name.as_str();
            if !DROPPED.contains(&name_str) && !name_str.starts_with("x-wharf-") {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.insert(
            "x-forwarded-for",
            http::HeaderValue::try_from(address.as_str())
                .unwrap_or(http::HeaderValue::from_static("unknown")),
        );
        outgoing.extensions_mut().insert(deadline);

        let service = UpstreamService::new(Arc::clone(upstream));
        let result = if route.idempotent && !route.client_streaming {
            let bytes = body
                .collect()
                .await
                .map_err(|err| {
                    tracing::debug!(error = %err, "the request body failed");
                    Status::cancelled("the request body was not received")
                })?
                .to_bytes();
            let (parts, ()) = outgoing.into_parts();
            let mut buffered = http::Request::from_parts(parts, bytes);
            buffered.extensions_mut().insert(Idempotent);
            let attempt = service.map_request(|request: http::Request<Bytes>| {
                request.map(|bytes| Body::new(Full::new(bytes)))
            });
            Retry::new(self.retry.clone(), attempt)
                .oneshot(buffered)
                .await
        } else {
            let (parts, ()) = outgoing.into_parts();
            service
                .oneshot(http::Request::from_parts(parts, body))
                .await
        };
        result.map_err(|err| upstream_error(&route.upstream, &err))
    }
}

/// What a client sees when a call could not be forwarded: never the internals.
fn upstream_error(upstream: &str, err: &BoxError) -> Status {
    if err.is::<CircuitOpen>() {
        Status::unavailable(format!(
            "the {upstream} service is unavailable; retry later"
        ))
    } else if err.is::<DeadlinePassed>() {
        Status::deadline_exceeded("the deadline passed before the call was forwarded")
    } else {
        tracing::warn!(%upstream, error = %err, "forwarding failed");
        Status::unavailable(format!(
            "the {upstream} service is unreachable; retry later"
        ))
    }
}
