//! The gateway: one public port for every Wharf service (ARCHITECTURE §4, §8).
//!
//! A call arrives; the gateway finds its upstream from the contracts ([`routes`]), checks the
//! caller at the edge ([`edge`]: access token, active session, shared rate limits), and
//! forwards it untouched ([`proxy`]) with its deadline, retrying only idempotent calls, through
//! each upstream endpoint's circuit breaker ([`upstream`]). The gateway's own API is
//! real-time notifications ([`notify`]), over a gRPC stream and server-sent events, resumable
//! from the last event id on any instance.
//!
//! # Layout
//! - [`config`] — the `[gateway]` section.
//! - [`routes`] — method → upstream, public or not, idempotent or not — read from the contracts.
//! - [`edge`] — token verification, the session check with its short cache, rate limits.
//! - [`upstream`] — endpoints with circuit breakers, round robin.
//! - [`proxy`] — forwarding.
//! - [`notify`] — the notification hub, `Subscribe`, and `GET /v1/events`.
//! - [`app`] — `App::build` + `register` + `run_until_stopped`.
#![forbid(unsafe_code)]

pub mod app;
mod cache;
pub mod config;
pub mod edge;
pub mod notify;
pub mod proxy;
pub mod routes;
pub mod upstream;

pub use app::{App, AppError, Deps, EVENTS_PATH};
pub use config::GatewayConfig;
