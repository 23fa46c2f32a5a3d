//! Authenticating callers: a tonic interceptor that verifies the bearer token and puts the
//! caller's [`Identity`] into the request's extensions for handlers to read.

use std::sync::Arc;

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
        let token = bearer(&request).ok_or_else(|| Status::unauthenticated(UNAUTHENTICATED))?;
        match self.tokens.verify(token) {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                Ok(request)
            }
            Err(TokenError::Invalid { reason }) => {
                tracing::info!(%reason, "refused an access token");
                Err(Status::unauthenticated(UNAUTHENTICATED))
            }
            Err(TokenError::NoSigningKey) => Err(Status::internal("internal error")),
        }
    }
}

fn bearer<T>(request: &Request<T>) -> Option<&str> {
    let value = request.metadata().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
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
