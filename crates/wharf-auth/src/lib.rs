//! The auth service (ARCHITECTURE §4: registration, login).
//!
//! - **Register** writes the user `PENDING` and the `OUTBOX` event `auth.user.registered` in
//!   one transaction; social's reply settles it `ACTIVE` or `REJECTED` ([`saga`]).
//! - **Login** is a dual write without a shared transaction: the session is written *pending*
//!   in Redis, `auth.user.logged_in` is published `ACKED` (`Nats-Msg-Id` = session id), and
//!   only then is the session promoted to *active*. A failed publish deletes the session; if
//!   that fails too, the pending TTL removes it. Only active sessions are honoured, so no crash
//!   point leaves a usable session without its event.
//! - **Refresh** rotates an opaque refresh token; replaying a rotated one revokes the whole
//!   family (RFC 9700 §4.14.2). **Logout** / **LogoutAll** revoke.
//! - Rate limits per address and per account live in Redis (GCRA), shared by all instances.
//!
//! # Layout
//! - [`app`]: `App::build` + `run_until_stopped`, the schema list.
//! - [`service`]: the RPC handlers.
//! - [`sessions`]: sessions and refresh-token families in Redis.
//! - [`users`]: the `auth` schema.
//! - [`saga`]: the registration saga's reply handlers.
//! - [`reconcile`]: no registration stays PENDING (retry, then compensate).
//! - [`password`]: argon2id on a bounded blocking pool, the password policy.
//! - [`config`]: the `[auth]` section.
#![forbid(unsafe_code)]

pub mod app;
pub mod cgroup;
pub mod config;
pub mod password;
pub mod reconcile;
pub mod saga;
pub mod service;
pub mod sessions;
pub mod users;

pub use app::{App, AppError, Deps, SCHEMA, schemas};
pub use config::{AuthConfig, AuthLimits};
pub use service::{AuthHandlers, BAD_CREDENTIALS, LoginStep};
