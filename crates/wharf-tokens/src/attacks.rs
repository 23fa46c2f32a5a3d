//! The attack table: hostile and broken access tokens, built the way an attacker would, for
//! the conformance tests of every verifier (this crate, the auth service, the gateway).
//!
//! Each row is a real token signed with the issuer's own key (or a stranger's) where the
//! attack needs it, so a verifier that refuses them all is not simply refusing everything:
//! [`Forger::legitimate`] builds the same token without the defect, and it must pass.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::access::TokenConfig;
use crate::keys::generate_key;

/// Builds tokens with arbitrary headers and claims, signed with a known key.
#[derive(Clone)]
pub struct Forger {
    key: SigningKey,
    kid: String,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for Forger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forger")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

/// `value` with `key` set to `replacement`.
pub fn with(mut value: Value, key: &str, replacement: Value) -> Value {
    value[key] = replacement;
    value
}

/// `value` without `key`.
pub fn without(mut value: Value, key: &str) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.remove(key);
    }
    value
}

impl Forger {
    /// A forger holding the issuer's signing key `key`, published as `kid`.
    pub fn new(key: SigningKey, kid: &str, config: &TokenConfig) -> Self {
        Self {
            key,
            kid: kid.to_owned(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        }
    }

    pub fn header(&self) -> Value {
        json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid})
    }

    /// Valid access claims for `sub` in session `sid`.
    pub fn claims(&self, sub: &str, sid: &str) -> Value {
        let t = now();
        json!({
            "iss": self.issuer, "aud": self.audience, "sub": sub, "exp": t + 900, "nbf": t,
            "iat": t, "jti": uuid::Uuid::now_v7().to_string(), "sid": sid, "roles": ["user"],
            "typ": "access"
        })
    }

    /// A token with exactly `header` and `payload`, signed with `key` (EdDSA).
    pub fn forge_with(header: &Value, payload: &Value, key: &SigningKey) -> String {
        let signing_input = format!("{}.{}", b64(header), b64(payload));
        let signature = key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    /// Signed with the issuer's key.
    pub fn forge(&self, header: &Value, payload: &Value) -> String {
        Self::forge_with(header, payload, &self.key)
    }

    /// The well-formed token every row of the table is a corruption of.
    pub fn legitimate(&self, sub: &str, sid: &str) -> String {
        self.forge(&self.header(), &self.claims(sub, sid))
    }

    /// Every hostile token for `sub` in session `sid`: `(what it tries, token)`.
    pub fn attack_table(&self, sub: &str, sid: &str) -> Vec<(&'static str, String)> {
        let stranger = generate_key();
        let t = now();
        let header = || self.header();
        let claims = || self.claims(sub, sid);

        let alg_none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT", "kid": self.kid})),
            b64(&claims())
        );

        // HS256 "signed" with the public key, hoping the verifier uses it as an HMAC secret.
        let hs_input = format!(
            "{}.{}",
            b64(&json!({"alg": "HS256", "typ": "JWT", "kid": self.kid})),
            b64(&claims())
        );
        let public = self.key.verifying_key().to_bytes();
        let hs256_public = match Hmac::<sha2::Sha256>::new_from_slice(&public) {
            Ok(mut mac) => {
                mac.update(hs_input.as_bytes());
                format!(
                    "{hs_input}.{}",
                    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
                )
            }
            Err(_) => format!("{hs_input}."),
        };

        let good = self.forge(&header(), &claims());
        let head_payload = good.rsplit_once('.').map_or("", |(head, _)| head);
        let bad_signature = format!("{head_payload}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
        let stranger_jwk = json!({
            "kty": "OKP", "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(stranger.verifying_key().as_bytes())
        });

        vec![
            ("alg: none", alg_none),
            ("HS256 signed with the public key", hs256_public),
            ("bad signature", bad_signature),
            (
                "signed by another key under our kid",
                Self::forge_with(&header(), &claims(), &stranger),
            ),
            (
                "unknown kid",
                self.forge(&with(header(), "kid", json!("k-unknown")), &claims()),
            ),
            ("no kid", self.forge(&without(header(), "kid"), &claims())),
            (
                "jku header",
                self.forge(
                    &with(header(), "jku", json!("https://evil.example/jwks")),
                    &claims(),
                ),
            ),
            (
                "jwk header",
                Self::forge_with(&with(header(), "jwk", stranger_jwk), &claims(), &stranger),
            ),
            (
                "x5u header",
                self.forge(
                    &with(header(), "x5u", json!("https://evil.example/cert")),
                    &claims(),
                ),
            ),
            (
                "expired",
                self.forge(&header(), &with(claims(), "exp", json!(t - 60))),
            ),
            (
                "nbf in the future",
                self.forge(&header(), &with(claims(), "nbf", json!(t + 60))),
            ),
            (
                "exp as a string",
                self.forge(
                    &header(),
                    &with(claims(), "exp", json!((t + 900).to_string())),
                ),
            ),
            (
                "nbf as a string",
                self.forge(&header(), &with(claims(), "nbf", json!(t.to_string()))),
            ),
            (
                "missing exp",
                self.forge(&header(), &without(claims(), "exp")),
            ),
            (
                "missing nbf",
                self.forge(&header(), &without(claims(), "nbf")),
            ),
            (
                "missing sub",
                self.forge(&header(), &without(claims(), "sub")),
            ),
            (
                "wrong aud",
                self.forge(&header(), &with(claims(), "aud", json!("someone-else"))),
            ),
            (
                "wrong iss",
                self.forge(&header(), &with(claims(), "iss", json!("evil-issuer"))),
            ),
            (
                "not an access token (typ)",
                self.forge(&header(), &with(claims(), "typ", json!("refresh"))),
            ),
            (
                "an opaque refresh token",
                crate::refresh::RefreshToken::generate().token,
            ),
            ("garbage", "a.b.c".to_owned()),
            ("empty", String::new()),
        ]
    }
}
