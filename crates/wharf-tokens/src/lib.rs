//! Access tokens for every Wharf service and the gateway.
//!
//! An access token is an EdDSA (Ed25519) JWT, valid 15 minutes, carrying `iss`, `aud`, `sub`,
//! `exp`, `nbf`, `iat`, `jti`, the session id (`sid`), the caller's roles, and `kid` in its
//! header. Verification is strict (RFC 8725): the algorithm is pinned to EdDSA whatever the
//! header says, every claim is required with numeric dates, leeway is at most 5 s, tokens that
//! carry `jku`, `jwk`, `x5u` or `x5c` are refused (a token never chooses its own key), and an
//! unknown `kid` is refused. Every failure is the same error to a caller; the reason is logged.
//!
//! # Layout
//! - [`keys`]: the keyset (signing key, published keys, rotation, JWKS).
//! - [`access`]: issuing and verifying access tokens.
//! - [`layer`]: the tonic interceptor that authenticates callers and exposes their identity.
//! - [`config`]: keys from configuration or PEM files; a generated development key.
//! - [`refresh`]: opaque refresh tokens, stored only as their SHA-256.
//! - [`session`]: whether a token's session is still active (auth's session store, read).
//! - [`attacks`]: the attack table of hostile tokens, for every verifier's tests.
#![forbid(unsafe_code)]

pub mod access;
pub mod attacks;
pub mod config;
pub mod keys;
pub mod layer;
pub mod refresh;
pub mod session;

pub use access::{AccessClaims, Identity, TokenConfig, TokenError, Tokens};
pub use config::{KeyConfig, KeyConfigError, TokensConfig};
pub use keys::{KeySet, KeyState};
pub use refresh::RefreshToken;
