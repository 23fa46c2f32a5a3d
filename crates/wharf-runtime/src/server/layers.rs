//! Tower layers applied to every call, in `linkerd2-proxy` style: `Layer` + `Service<S>{inner}`.
//!
//! Order (outermost first): [`TraceLayer`] → [`LoadShedLayer`] → [`DeadlineLayer`] →
//! [`MessageSizeLayer`] → service. Shedding happens before any work, and a shed call is still
//! traced.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::Frame;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};
use tracing::Instrument;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Calls that are never shed: probes must answer when the server is busy, or an orchestrator
/// would restart a server that is merely loaded.
fn is_exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// Admits at most `max` calls at once across every connection; the next one is answered
/// `RESOURCE_EXHAUSTED` immediately, with a `RetryInfo` detail. No queue forms.
#[derive(Debug, Clone)]
pub struct LoadShedLayer {
    permits: Arc<Semaphore>,
    retry_after: Duration,
}

impl LoadShedLayer {
    pub fn new(max: usize, retry_after: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            retry_after,
        }
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShed {
            inner,
            permits: Arc::clone(&self.permits),
            retry_after: self.retry_after,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadShed<S> {
    inner: S,
    permits: Arc<Semaphore>,
    retry_after: Duration,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for LoadShed<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        if is_exempt(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let permit: OwnedSemaphorePermit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                tracing::warn!(
                    path = request.uri().path(),
                    "shedding call: server at its concurrency limit"
                );
                let status = Status::with_error_details(
                    tonic::Code::ResourceExhausted,
                    "server is at capacity; retry later",
                    ErrorDetails::with_retry_info(Some(self.retry_after)),
                );
                return Box::pin(async move { Ok(status.into_http()) });
            }
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            drop(permit);
            result
        })
    }
}

/// Bounds every call by the sooner of the client's `grpc-timeout` and the server's own timeout,
/// answering `DEADLINE_EXCEEDED` when it passes. The handler future is dropped at that moment,
/// so its work stops and an open database transaction is rolled back.
///
/// The same layer cuts every call still running when `cut` is cancelled (the shutdown grace
/// period ran out), answering `UNAVAILABLE` so that clients retry elsewhere.
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    max: Duration,
    cut: CancellationToken,
}

impl DeadlineLayer {
    pub fn new(max: Duration, cut: CancellationToken) -> Self {
        Self { max, cut }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            max: self.max,
            cut: self.cut.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    max: Duration,
    cut: CancellationToken,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Deadline<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let client = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout);
        let budget = client.map_or(self.max, |client| client.min(self.max));
        let response = self.inner.call(request);
        let cut = self.cut.clone();
        Box::pin(async move {
            tokio::select! {
                outcome = tokio::time::timeout(budget, response) => match outcome {
                    Ok(result) => result,
                    Err(_) => {
                        let message = format!("deadline of {budget:?} exceeded");
                        Ok(Status::deadline_exceeded(message).into_http())
                    }
                },
                () = cut.cancelled() => {
                    Ok(Status::unavailable("server shutting down; retry").into_http())
                }
            }
        })
    }
}

/// Refuses a request message larger than `max` bytes with `RESOURCE_EXHAUSTED` as soon as its
/// gRPC frame header announces the length, before the payload is buffered. (tonic's own limit
/// answers `OUT_OF_RANGE` after decoding; the gRPC spec asks for `RESOURCE_EXHAUSTED`.)
#[derive(Debug, Clone, Copy)]
pub struct MessageSizeLayer {
    max: usize,
}

impl MessageSizeLayer {
    pub fn new(max: usize) -> Self {
        Self { max }
    }
}

impl<S> Layer<S> for MessageSizeLayer {
    type Service = MessageSize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageSize {
            inner,
            max: self.max,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MessageSize<S> {
    inner: S,
    max: usize,
}

impl<S> Service<http::Request<tonic::body::Body>> for MessageSize<S>
where
    S: Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let max = self.max;
        self.inner
            .call(request.map(|body| tonic::body::Body::new(LimitedBody::new(body, max))))
    }
}

pin_project_lite::pin_project! {
    /// A request body that tracks gRPC message frames (1 flag byte, 4 length bytes, payload)
    /// across data chunks and fails as soon as a header announces an oversized message.
    struct LimitedBody {
        #[pin]
        inner: tonic::body::Body,
        max: usize,
        header: [u8; 5],
        header_len: usize,
        payload_left: usize,
    }
}

impl LimitedBody {
    fn new(inner: tonic::body::Body, max: usize) -> Self {
        Self {
            inner,
            max,
            header: [0; 5],
            header_len: 0,
            payload_left: 0,
        }
    }
}

/// Advances the frame scanner over `data`; `Err` names the oversized length.
fn scan_frames(
    mut data: &[u8],
    max: usize,
    header: &mut [u8; 5],
    header_len: &mut usize,
    payload_left: &mut usize,
) -> Result<(), usize> {
    while !data.is_empty() {
        if *payload_left > 0 {
            let skip = (*payload_left).min(data.len());
            *payload_left -= skip;
            data = &data[skip..];
            continue;
        }
        let take = (5 - *header_len).min(data.len());
        header[*header_len..*header_len + take].copy_from_slice(&data[..take]);
        *header_len += take;
        data = &data[take..];
        if *header_len == 5 {
            *header_len = 0;
            let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            if length > max {
                return Err(length);
            }
            *payload_left = length;
        }
    }
    Ok(())
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
            && let Err(length) = scan_frames(
                data.chunk(),
                *this.max,
                this.header,
                this.header_len,
                this.payload_left,
            )
        {
            let message = format!(
                "request message of {length} bytes exceeds the limit of {} bytes",
                this.max
            );
            return Poll::Ready(Some(Err(Status::resource_exhausted(message))));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Parses a `grpc-timeout` header: at most 8 digits and a unit (`H M S m u n`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Opens a span per call, parented to the caller's W3C trace context when it sent one.
#[derive(Debug, Clone, Copy)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
}

impl<S, ReqBody> Service<http::Request<ReqBody>> for Trace<S>
where
    S: Service<http::Request<ReqBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let span = tracing::info_span!("grpc", rpc.method = %request.uri().path());
        // Most calls carry no trace context: skip the header copy for them.
        if request.headers().contains_key("traceparent") {
            let metadata = tonic::metadata::MetadataMap::from_headers(request.headers().clone());
            crate::telemetry::set_parent_from(&span, &metadata);
        }
        let response = span.in_scope(|| self.inner.call(request));
        Box::pin(response.instrument(span))
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_grpc_timeout, scan_frames};
    use std::time::Duration;

    fn frame(len: u32) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend(std::iter::repeat_n(7, len as usize));
        bytes
    }

    /// Frame headers split across chunks at every possible offset are still read correctly.
    #[test]
    fn frame_scanner_handles_any_chunking() {
        let mut stream = frame(10);
        stream.extend(frame(3));
        stream.extend(frame(64));
        for split in 0..stream.len() {
            let (mut header, mut header_len, mut left) = ([0u8; 5], 0, 0);
            let (a, b) = stream.split_at(split);
            let result = scan_frames(a, 63, &mut header, &mut header_len, &mut left)
                .and_then(|()| scan_frames(b, 63, &mut header, &mut header_len, &mut left));
            assert_eq!(result, Err(64), "split at {split}");
        }
        let (mut header, mut header_len, mut left) = ([0u8; 5], 0, 0);
        assert_eq!(
            scan_frames(&stream, 64, &mut header, &mut header_len, &mut left),
            Ok(())
        );
    }

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("100u"), Some(Duration::from_micros(100)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
    }
}
