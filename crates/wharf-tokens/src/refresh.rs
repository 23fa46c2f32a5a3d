//! The refresh-token model: opaque, 256 random bits, stored only as a SHA-256 digest.
//!
//! A refresh token is not a JWT: nothing in it can be verified offline, so it is only good at
//! the auth service, which looks its digest up. Stealing the store does not yield usable
//! tokens. The `wrt_` prefix makes leaked tokens easy to find with secret scanners, and makes
//! a refresh token fail fast as an access token (it is not a JWT at all).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

const PREFIX: &str = "wrt_";
/// 256 bits.
pub const SECRET_BYTES: usize = 32;

/// A freshly minted refresh token and its digest.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// What the client gets, once.
    pub token: String,
    /// What is stored.
    pub digest: String,
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshToken")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl RefreshToken {
    pub fn generate() -> Self {
        let mut secret = [0_u8; SECRET_BYTES];
        OsRng.fill_bytes(&mut secret);
        let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
        let digest = digest(&token);
        Self { token, digest }
    }
}

/// The stored form of a presented token (hex SHA-256). Any string has a digest; an unknown
/// one simply finds nothing.
pub fn digest(token: &str) -> String {
    let hash = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in hash {
        use std::fmt::Write;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Whether `token` has the shape of a refresh token (cheap pre-check before a lookup).
pub fn looks_like_refresh_token(token: &str) -> bool {
    token
        .strip_prefix(PREFIX)
        .is_some_and(|secret| secret.len() == 43 && URL_SAFE_NO_PAD.decode(secret).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_prefixed_and_distinct() {
        let a = RefreshToken::generate();
        let b = RefreshToken::generate();
        assert_ne!(a.token, b.token);
        assert!(looks_like_refresh_token(&a.token));
        let secret = URL_SAFE_NO_PAD.decode(&a.token[PREFIX.len()..]).unwrap();
        assert_eq!(secret.len(), 32);
        assert_eq!(a.digest, digest(&a.token));
        assert_eq!(a.digest.len(), 64);
        assert!(!a.digest.contains(&a.token[PREFIX.len()..]));
        assert!(!looks_like_refresh_token("eyJhbGciOiJFZERTQSJ9.e30.sig"));
    }
}
