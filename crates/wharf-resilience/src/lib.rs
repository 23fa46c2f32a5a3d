//! Resilience building blocks shared by the services and the gateway.
//!
//! - [`ratelimit`]: a GCRA rate limiter whose state lives in Redis, so every instance of a
//!   service (and every gateway) shares the same buckets.
#![forbid(unsafe_code)]

pub mod ratelimit;

pub use ratelimit::{Decision, Limit, RateLimitError, RateLimiter};
