//! Deadline propagation: a call's deadline travels with it as a request extension, and each
//! attempt sent upstream carries the time that is left as its `grpc-timeout`, so an upstream
//! stops working on a call its caller has given up on.

use std::task::{Context, Poll};
use std::time::Instant;

use tower::{BoxError, Layer, Service};

/// When the caller stops waiting for this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

/// The error of an attempt that would start after its deadline.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the call's deadline passed before it could be sent upstream")]
pub struct DeadlinePassed;

/// Sets `grpc-timeout` on every request from its [`Deadline`] extension, and refuses requests
/// whose deadline already passed. Requests without one pass unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateDeadlineLayer;

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline { inner }
    }
}

#[derive(Debug, Clone)]
pub struct PropagateDeadline<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for PropagateDeadline<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(Deadline(at)) = request.extensions().get::<Deadline>().copied() {
            let Some(left) = at
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                return Box::pin(std::future::ready(Err(DeadlinePassed.into())));
            };
            let value = crate::grpc::encode_grpc_timeout(left);
            request.headers_mut().insert(
                "grpc-timeout",
                http::HeaderValue::try_from(value).expect("digits and a unit are a header value"),
            );
        }
        let call = self.inner.call(request);
        Box::pin(async move { call.await.map_err(Into::into) })
    }
}
