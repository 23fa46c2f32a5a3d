//! Retries with exponential backoff and jitter, for idempotent gRPC calls only.
//!
//! A request may be retried only if it carries the [`Idempotent`] marker (the gateway sets it
//! from the method's `idempotency_level` in the contract) and its body is already in memory
//! (`http::Request<Bytes>`): a call that may have side effects is sent exactly once, whatever
//! happens. An attempt is retried when the upstream could not be reached or answered
//! `UNAVAILABLE` before any message; never after an application error, never when every
//! circuit is open (that is failing fast), never past the call's [`Deadline`], and never beyond
//! a retry budget (a fraction of recent calls), so that retries cannot multiply the load of
//! an upstream that is already struggling.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tower::BoxError;
use tower::retry::Policy;
use tower::retry::backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use tower::retry::budget::{Budget, TpsBudget};
use tower::util::rng::HasherRng;

use crate::breaker::CircuitOpen;
use crate::deadline::{Deadline, DeadlinePassed};

/// Marks a request whose method is idempotent: sending it twice has the effect of once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idempotent;

/// How retries back off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included; 1 turns retries off.
    pub max_attempts: u32,
    /// The first backoff; each next one doubles, up to `max_backoff`, plus random jitter.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Retries allowed as a fraction of recent calls (0.2 = one retry per five calls)...
    pub budget_ratio: f32,
    /// ...and at least this many retries per second, so a quiet upstream still gets some.
    pub budget_min_per_sec: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_millis(500),
            budget_ratio: 0.2,
            budget_min_per_sec: 10,
        }
    }
}

/// The retry policy of one call; build one per upstream with [`GrpcRetry::new`] and use it
/// with `tower::retry::RetryLayer`.
#[derive(Debug, Clone)]
pub struct GrpcRetry {
    config: RetryConfig,
    attempts: u32,
    maker: ExponentialBackoffMaker,
    backoff: ExponentialBackoff,
    budget: Arc<TpsBudget>,
}

impl GrpcRetry {
    pub fn new(config: RetryConfig) -> Self {
        let budget = Arc::new(TpsBudget::new(
            Duration::from_secs(10),
            config.budget_min_per_sec,
            config.budget_ratio,
        ));
        let mut maker = backoff_maker(&config);
        let backoff = maker.make_backoff();
        Self {
            config,
            attempts: 1,
            maker,
            backoff,
            budget,
        }
    }
}

fn backoff_maker(config: &RetryConfig) -> ExponentialBackoffMaker {
    let max = config.max_backoff.max(Duration::from_millis(1));
    ExponentialBackoffMaker::new(
        config.initial_backoff.min(max),
        max,
        1.0,
        // A fresh seed per call, so that calls that failed together do not retry together.
        HasherRng::default(),
    )
    .expect("min ≤ max, max > 0 and jitter 1.0 are valid")
}

/// Whether an attempt's outcome is worth another attempt.
fn retryable<B>(result: &Result<http::Response<B>, BoxError>) -> bool {
    match result {
        Ok(response) => crate::grpc::header_status(response.headers())
            .is_some_and(|code| code == tonic::Code::Unavailable),
        Err(err) => !(err.is::<CircuitOpen>() || err.is::<DeadlinePassed>()),
    }
}

impl<B> Policy<http::Request<Bytes>, http::Response<B>, BoxError> for GrpcRetry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        request: &mut http::Request<Bytes>,
        result: &mut Result<http::Response<B>, BoxError>,
    ) -> Option<Self::Future> {
        if result.is_ok() {
            self.budget.deposit();
        }
        if self.attempts >= self.config.max_attempts || !retryable(result) {
            return None;
        }
        if !self.budget.withdraw() {
            tracing::debug!(
                path = request.uri().path(),
                "retry budget spent; not retrying"
            );
            return None;
        }
        let sleep = self.backoff.next_backoff();
        if let Some(Deadline(at)) = request.extensions().get::<Deadline>()
            && sleep.deadline().into_std() >= *at
        {
            return None;
        }
        self.attempts += 1;
        tracing::debug!(
            path = request.uri().path(),
            attempt = self.attempts,
            "retrying an idempotent call"
        );
        Some(sleep)
    }

    fn clone_request(&mut self, request: &http::Request<Bytes>) -> Option<http::Request<Bytes>> {
        request.extensions().get::<Idempotent>()?;
        if self.attempts == 1 {
            // The first attempt of a new call: its own backoff sequence.
            self.maker = backoff_maker(&self.config);
            self.backoff = self.maker.make_backoff();
        }
        let mut copy = http::Request::new(request.body().clone());
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        copy.extensions_mut().insert(Idempotent);
        if let Some(deadline) = request.extensions().get::<Deadline>() {
            copy.extensions_mut().insert(*deadline);
        }
        Some(copy)
    }
}

/// Checks at compile time that the policy is usable behind a shared service.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<GrpcRetry>();
};

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn request(idempotent: bool) -> http::Request<Bytes> {
        let mut request = http::Request::new(Bytes::from_static(b"body"));
        if idempotent {
            request.extensions_mut().insert(Idempotent);
        }
        request
    }

    fn unavailable() -> Result<http::Response<()>, BoxError> {
        let mut response = http::Response::new(());
        response
            .headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("14"));
        Ok(response)
    }

    #[test]
    fn only_idempotent_requests_are_cloned() {
        let mut policy = GrpcRetry::new(RetryConfig::default());
        assert!(
            Policy::<_, http::Response<()>, BoxError>::clone_request(&mut policy, &request(false))
                .is_none()
        );
        let copy =
            Policy::<_, http::Response<()>, BoxError>::clone_request(&mut policy, &request(true))
                .expect("idempotent");
        assert_eq!(copy.body(), &Bytes::from_static(b"body"));
    }

    #[tokio::test]
    async fn retries_unavailable_up_to_the_limit_but_not_application_errors() {
        let mut policy = GrpcRetry::new(RetryConfig {
            max_attempts: 3,
            ..RetryConfig::default()
        });
        let mut req = request(true);
        assert!(policy.retry(&mut req, &mut unavailable()).is_some());
        assert!(policy.retry(&mut req, &mut unavailable()).is_some());
        assert!(
            policy.retry(&mut req, &mut unavailable()).is_none(),
            "three attempts in all"
        );

        let mut policy = GrpcRetry::new(RetryConfig::default());
        let mut not_found = http::Response::new(());
        not_found
            .headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("5"));
        assert!(policy.retry(&mut req, &mut Ok(not_found)).is_none());
        let mut open: Result<http::Response<()>, BoxError> = Err(CircuitOpen {
            upstream: "x".into(),
        }
        .into());
        assert!(
            policy.retry(&mut req, &mut open).is_none(),
            "an open circuit fails fast"
        );
    }

    #[tokio::test]
    async fn never_retries_past_the_deadline() {
        let mut policy = GrpcRetry::new(RetryConfig {
            initial_backoff: Duration::from_millis(50),
            ..RetryConfig::default()
        });
        let mut req = request(true);
        req.extensions_mut()
            .insert(Deadline(Instant::now() + Duration::from_millis(10)));
        assert!(policy.retry(&mut req, &mut unavailable()).is_none());
    }
}
