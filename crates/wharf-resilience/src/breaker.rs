//! A circuit breaker per upstream, as a tower layer.
//!
//! Closed, it counts consecutive failures (a transport error, or a gRPC `UNAVAILABLE`; see
//! [`GrpcFailure`]); at `failure_threshold` it opens. Open, every call fails at once with
//! [`CircuitOpen`] — no connection attempt, no waiting — for `open_for`. Then it is half-open:
//! exactly one call goes through as a probe while the others still fail fast; a successful
//! probe closes the circuit, a failed one opens it again for twice as long (up to
//! `max_open_for`). A probe that is cancelled before it answers frees the slot for the next.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tower::{BoxError, Layer, Service};

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long the circuit stays open before one probe is let through.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    /// The longest open period, after repeated failed probes.
    #[serde(with = "humantime_serde")]
    pub max_open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(2),
            max_open_for: Duration::from_secs(30),
        }
    }
}

/// The error of a call refused because the circuit is open.
#[derive(Debug, Clone, thiserror::Error)]
#[error("circuit open for upstream {upstream}")]
pub struct CircuitOpen {
    pub upstream: String,
}

/// What a breaker is doing, for health reports and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
enum Mode {
    Closed { failures: u32 },
    Open { until: Instant, open_for: Duration },
    HalfOpen { probing: bool, open_for: Duration },
}

/// The shared state of one upstream's breaker; clones share it.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    name: Arc<str>,
    config: BreakerConfig,
    mode: Arc<Mutex<Mode>>,
}

/// Permission for one call; report its outcome with [`Admission::record`]. Dropped without a
/// record (the call was cancelled), it counts as neither success nor failure.
#[derive(Debug)]
pub struct Admission {
    breaker: CircuitBreaker,
    probe: bool,
    recorded: bool,
}

impl CircuitBreaker {
    pub fn new(name: impl Into<Arc<str>>, config: BreakerConfig) -> Self {
        Self {
            name: name.into(),
            config,
            mode: Arc::new(Mutex::new(Mode::Closed { failures: 0 })),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mode> {
        // The state is a few plain fields updated whole: a panic elsewhere cannot leave it
        // half-written, so a poisoned lock is still a valid state.
        self.mode
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state now (an open circuit whose period has passed reads as half-open).
    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            Mode::Closed { .. } => BreakerState::Closed,
            Mode::Open { until, .. } if Instant::now() < until => BreakerState::Open,
            Mode::Open { .. } | Mode::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a call would be admitted now, without taking the probe slot.
    pub fn would_admit(&self) -> bool {
        match *self.lock() {
            Mode::Closed { .. } => true,
            Mode::Open { until, .. } => Instant::now() >= until,
            Mode::HalfOpen { probing, .. } => !probing,
        }
    }

    /// Admits one call, or refuses it while the circuit is open.
    pub fn admit(&self) -> Result<Admission, CircuitOpen> {
        let mut mode = self.lock();
        let probe = match *mode {
            Mode::Closed { .. } => false,
            Mode::Open { until, open_for } => {
                if Instant::now() < until {
                    return Err(self.open_error());
                }
                *mode = Mode::HalfOpen {
                    probing: true,
                    open_for,
                };
                true
            }
            Mode::HalfOpen {
                ref mut probing, ..
            } => {
                if *probing {
                    return Err(self.open_error());
                }
                *probing = true;
                true
            }
        };
        drop(mode);
        Ok(Admission {
            breaker: self.clone(),
            probe,
            recorded: false,
        })
    }

    fn open_error(&self) -> CircuitOpen {
        CircuitOpen {
            upstream: self.name.to_string(),
        }
    }

    fn on_success(&self) {
        let mut mode = self.lock();
        if !matches!(*mode, Mode::Closed { failures: 0 }) {
            if !matches!(*mode, Mode::Closed { .. }) {
                tracing::info!(upstream = %self.name, "circuit closed: the probe succeeded");
            }
            *mode = Mode::Closed { failures: 0 };
        }
    }

    fn on_failure(&self, probe: bool) {
        let mut mode = self.lock();
        let now = Instant::now();
        match *mode {
            Mode::Closed { ref mut failures } => {
                *failures += 1;
                if *failures >= self.config.failure_threshold.max(1) {
                    tracing::warn!(upstream = %self.name, failures = *failures, open_for = ?self.config.open_for, "circuit opened");
                    *mode = Mode::Open {
                        until: now + self.config.open_for,
                        open_for: self.config.open_for,
                    };
                }
            }
            Mode::HalfOpen { open_for, .. } if probe => {
                let open_for = (open_for * 2).min(self.config.max_open_for);
                tracing::warn!(upstream = %self.name, ?open_for, "circuit re-opened: the probe failed");
                *mode = Mode::Open {
                    until: now + open_for,
                    open_for,
                };
            }
            // A call admitted while closed that fails after the circuit opened changes nothing.
            Mode::HalfOpen { .. } | Mode::Open { .. } => {}
        }
    }

    fn on_cancel(&self, probe: bool) {
        if probe && let Mode::HalfOpen { probing, .. } = &mut *self.lock() {
            *probing = false;
        }
    }
}

impl Admission {
    pub fn record(mut self, success: bool) {
        self.recorded = true;
        if success {
            self.breaker.on_success();
        } else {
            self.breaker.on_failure(self.probe);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.on_cancel(self.probe);
        }
    }
}

/// Decides whether a call's result counts as a failure of the upstream.
pub trait Classify<T, E> {
    fn is_failure(&self, result: &Result<T, E>) -> bool;
}

/// For gRPC over HTTP/2: a transport error, or an answer whose headers carry
/// `grpc-status: 14` (`UNAVAILABLE`, what a draining or shedding server and a dead connection
/// answer). Application errors (`NOT_FOUND`, `INVALID_ARGUMENT`, …) are successes: the upstream
/// is working.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcFailure;

impl<B, E> Classify<http::Response<B>, E> for GrpcFailure {
    fn is_failure(&self, result: &Result<http::Response<B>, E>) -> bool {
        match result {
            Err(_) => true,
            Ok(response) => crate::grpc::header_status(response.headers())
                .is_some_and(|code| code == tonic::Code::Unavailable),
        }
    }
}

/// Wraps an upstream's service with its [`CircuitBreaker`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = GrpcFailure> {
    breaker: CircuitBreaker,
    classify: C,
}

impl CircuitBreakerLayer<GrpcFailure> {
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self {
            breaker,
            classify: GrpcFailure,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    pub fn with_classifier(breaker: CircuitBreaker, classify: C) -> Self {
        Self { breaker, classify }
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = Breaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Breaker {
            inner,
            breaker: self.breaker.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// The service of [`CircuitBreakerLayer`]; refusals are [`CircuitOpen`] errors.
#[derive(Debug, Clone)]
pub struct Breaker<S, C> {
    inner: S,
    breaker: CircuitBreaker,
    classify: C,
}

impl<S, C> Breaker<S, C> {
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, C, Req> Service<Req> for Breaker<S, C>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let admission = match self.breaker.admit() {
            Ok(admission) => admission,
            Err(open) => return Box::pin(std::future::ready(Err(open.into()))),
        };
        let call = self.inner.call(request);
        let classify = self.classify.clone();
        Box::pin(async move {
            let result = call.await;
            admission.record(!classify.is_failure(&result));
            result.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> CircuitBreaker {
        CircuitBreaker::new(
            "test",
            BreakerConfig {
                failure_threshold: 3,
                open_for,
                max_open_for: open_for * 4,
            },
        )
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker(Duration::from_secs(60));
        b.admit().unwrap().record(false);
        b.admit().unwrap().record(false);
        b.admit().unwrap().record(true);
        b.admit().unwrap().record(false);
        b.admit().unwrap().record(false);
        assert_eq!(b.state(), BreakerState::Closed);
        b.admit().unwrap().record(false);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.admit().is_err());
        assert!(!b.would_admit());
    }

    #[test]
    fn one_probe_at_a_time_and_success_closes() {
        let b = breaker(Duration::ZERO);
        for _ in 0..3 {
            b.admit().unwrap().record(false);
        }
        let probe = b
            .admit()
            .expect("the open period is over: a probe goes through");
        assert!(
            b.admit().is_err(),
            "a second caller fails fast while probing"
        );
        probe.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit().is_ok());
    }

    #[test]
    fn failed_probe_reopens_longer_and_cancelled_probe_frees_the_slot() {
        let b = breaker(Duration::ZERO);
        for _ in 0..3 {
            b.admit().unwrap().record(false);
        }
        drop(b.admit().unwrap());
        let probe = b.admit().expect("a cancelled probe frees its slot");
        probe.record(false);
        // open_for doubles from zero to zero here; with a real period the state is Open.
        let b = breaker(Duration::from_millis(50));
        for _ in 0..3 {
            b.admit().unwrap().record(false);
        }
        assert_eq!(b.state(), BreakerState::Open);
    }
}
