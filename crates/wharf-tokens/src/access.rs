//! Issuing and verifying access tokens.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::KeySet;

/// The most clock skew tolerated between issuer and verifier.
pub const MAX_LEEWAY: Duration = Duration::from_secs(5);

/// What every verifier must agree on with the issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    /// Clamped to [`MAX_LEEWAY`].
    pub leeway: Duration,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            issuer: "wharf-auth".to_owned(),
            audience: "wharf".to_owned(),
            access_ttl: Duration::from_secs(15 * 60),
            leeway: MAX_LEEWAY,
        }
    }
}

/// The claims of an access token. Dates are numbers (RFC 7519 NumericDate); a string date does
/// not deserialize, so such a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    /// The session this token belongs to; revoking the session revokes the token where the
    /// session is checked (the gateway).
    pub sid: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Always `access`: nothing else this issuer signs is accepted as an access token.
    pub typ: String,
}

/// Who is calling, once their token verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub session_id: String,
    pub roles: Vec<String>,
    pub expires_at: u64,
    pub token_id: String,
}

impl Identity {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Why a token was refused. Callers see one message for all of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("invalid or expired credentials")]
    Invalid { reason: String },
    #[error("no active signing key")]
    NoSigningKey,
}

fn invalid(reason: impl Into<String>) -> TokenError {
    TokenError::Invalid {
        reason: reason.into(),
    }
}

/// Issues and verifies access tokens with a keyset.
#[derive(Debug, Clone)]
pub struct Tokens {
    keys: KeySet,
    config: TokenConfig,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Tokens {
    pub fn new(keys: KeySet, mut config: TokenConfig) -> Self {
        config.leeway = config.leeway.min(MAX_LEEWAY);
        Self { keys, config }
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    pub fn keys_mut(&mut self) -> &mut KeySet {
        &mut self.keys
    }

    pub fn config(&self) -> &TokenConfig {
        &self.config
    }

    /// Signs an access token for `user_id` in `session_id`; returns it with its claims.
    pub fn issue(
        &self,
        user_id: &str,
        session_id: &str,
        roles: &[String],
    ) -> Result<(String, AccessClaims), TokenError> {
        let issued = now();
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            sub: user_id.to_owned(),
            exp: issued + self.config.access_ttl.as_secs(),
            nbf: issued,
            iat: issued,
            jti: uuid::Uuid::now_v7().to_string(),
            sid: session_id.to_owned(),
            roles: roles.to_vec(),
            typ: "access".to_owned(),
        };
        let token = self.sign(&claims)?;
        Ok((token, claims))
    }

    /// Signs arbitrary claims with the active key (tests build hostile tokens with it).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        let (kid, key) = self.keys.signer().ok_or(TokenError::NoSigningKey)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        header.typ = Some("JWT".to_owned());
        jsonwebtoken::encode(&header, claims, &key)
            .map_err(|err| invalid(format!("signing failed: {err}")))
    }

    /// Verifies `token` and returns the caller's identity.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| invalid(format!("malformed header: {err}")))?;
        // The key is ours to choose, never the token's.
        if header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
        {
            return Err(invalid("token names its own key (jku/jwk/x5u/x5c)"));
        }
        if header.alg != Algorithm::EdDSA {
            return Err(invalid(format!("algorithm {:?} is not EdDSA", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| invalid("no kid"))?;
        let key = self
            .keys
            .verifier(&kid)
            .ok_or_else(|| invalid(format!("unknown kid {kid}")))?;

        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.required_spec_claims = ["exp", "nbf", "iat", "iss", "aud", "sub"]
            .into_iter()
            .map(str::to_owned)
            .collect::<HashSet<_>>();
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map_err(|err| invalid(format!("rejected: {err}")))?;
        let claims = data.claims;
        if claims.typ != "access" {
            return Err(invalid(format!("typ {} is not access", claims.typ)));
        }
        if claims.iat > now() + self.config.leeway.as_secs() {
            return Err(invalid("issued in the future"));
        }
        Ok(Identity {
            user_id: claims.sub,
            session_id: claims.sid,
            roles: claims.roles,
            expires_at: claims.exp,
            token_id: claims.jti,
        })
    }
}
