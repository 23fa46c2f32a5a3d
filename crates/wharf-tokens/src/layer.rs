//! Authenticating callers: a tonic interceptor that verifies the bearer token and puts the
//! caller's [`Identity`] into the request's extensions for handlers to read.

use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::access::{Identity, TokenError, Tokens};

/// The message every authentication failure gets, whatever the reason: a caller learns
/// nothing about why their token was refused.
pub const UNAUTHENTICATED: &str = "invalid or missing credentials";

/// Verifies `authorization: Bearer <token>` on every call.
#[derive(Debug, Clone)]
pub struct Authenticate {
    tokens: Arc<Tokens>,
}

impl Authenticate {
    pub fn new(tokens: Arc<Tokens>) -> Self {
        Self { tokens }
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let identity = verify_bearer(&self.tokens, request.metadata())?;
        request.extensions_mut().insert(identity);
        Ok(request)
    }
}

/// Verifies the bearer token in `metadata`; every refusal is the same `UNAUTHENTICATED`, and
/// the reason is logged.
pub fn verify_bearer(tokens: &Tokens, metadata: &MetadataMap) -> Result<Identity, Status> {
    let token = bearer_token(metadata).ok_or_else(|| Status::unauthenticated(UNAUTHENTICATED))?;
    match tokens.verify(token) {
        Ok(identity) => Ok(identity),
        Err(TokenError::Invalid { reason }) => {
            tracing::info!(%reason, "refused an access token");
            Err(Status::unauthenticated(UNAUTHENTICATED))
        }
        Err(TokenError::NoSigningKey) => Err(Status::internal("internal error")),
    }
}

/// The token of an `authorization: Bearer <token>` header.
pub fn bearer_token(metadata: &MetadataMap) -> Option<&str> {
    parse_bearer(metadata.get("authorization")?.to_str().ok()?)
}

/// The token of an `authorization` header value (`Bearer <token>`, any case of `Bearer`).
pub fn parse_bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|token| !token.is_empty())
}

/// The verified caller of a request that passed [`Authenticate`].
pub fn identity<T>(request: &Request<T>) -> Result<&Identity, Status> {
    request
        .extensions()
        .get::<Identity>()
        .ok_or_else(|| Status::unauthenticated(UNAUTHENTICATED))
}

/// The caller, who must hold `role`.
pub fn require_role<'a, T>(request: &'a Request<T>, role: &str) -> Result<&'a Identity, Status> {
    let identity = identity(request)?;
    if identity.has_role(role) {
        Ok(identity)
    } else {
        Err(Status::permission_denied(format!(
            "the {role} role is required"
        )))
    }
}
