//! Resilience building blocks shared by the services and the gateway.
//!
//! - [`ratelimit`]: a GCRA rate limiter whose state lives in Redis, so every instance of a
//!   service (and every gateway) shares the same buckets; [`coalesce`] merges concurrent calls
//!   for the same buckets into one round trip.
//! - [`breaker`]: a circuit breaker per upstream, as a tower layer: fail fast while open,
//!   one probe to close.
//! - [`retry`]: a tower retry policy with exponential backoff, jitter and a budget, for
//!   idempotent calls only.
//! - [`deadline`]: a call's deadline as a request extension, sent upstream as `grpc-timeout`.
//! - [`grpc`]: the gRPC-over-HTTP/2 details they share.
#![forbid(unsafe_code)]

pub mod breaker;
pub mod coalesce;
pub mod deadline;
pub mod grpc;
pub mod ratelimit;
pub mod retry;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker, CircuitBreakerLayer, CircuitOpen};
pub use coalesce::CoalescingLimiter;
pub use deadline::{Deadline, DeadlinePassed, PropagateDeadlineLayer};
pub use ratelimit::{Admission, AllDecision, Bucket, Decision, Limit, RateLimitError, RateLimiter};
pub use retry::{GrpcRetry, Idempotent, RetryConfig};
