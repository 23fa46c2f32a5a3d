//! The keyset: which key signs, which keys verify, and how keys rotate.
//!
//! Rotation without a single rejected token:
//! 1. [`KeySet::publish`] a new key: it verifies and appears in the JWKS, but does not sign yet,
//!    so every verifier (gateway, services) can learn it first;
//! 2. [`KeySet::activate`] it: it signs from now on; the previous key keeps verifying;
//! 3. [`KeySet::retire`] the old key once every token it signed has expired (access TTL plus
//!    leeway after activation), and it disappears from the JWKS.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{DecodingKey, EncodingKey};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Verifies and is published, does not sign yet.
    Published,
    /// Signs new tokens (exactly one key), and verifies.
    Active,
}

#[derive(Clone)]
struct Entry {
    kid: String,
    state: KeyState,
    signing: Option<SigningKey>,
    verifying: VerifyingKey,
}

/// Keys by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        let kids: Vec<(&str, KeyState)> = self
            .entries
            .iter()
            .map(|e| (e.kid.as_str(), e.state))
            .collect();
        f.debug_struct("KeySet").field("keys", &kids).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key {kid}: invalid PKCS#8 Ed25519 private key: {reason}")]
    InvalidKey { kid: String, reason: String },
    #[error("no key with kid {0}")]
    UnknownKid(String),
    #[error("a key with kid {0} already exists")]
    DuplicateKid(String),
    #[error("key {0} has no private half and cannot sign")]
    VerifyOnly(String),
    #[error("key {0} is the active signing key; activate another first")]
    RetiringActive(String),
}

impl KeySet {
    /// A keyset with one freshly generated active key (development and tests).
    pub fn generate(kid: &str) -> Self {
        let key = generate_key();
        let mut set = Self::default();
        set.entries.push(Entry {
            kid: kid.to_owned(),
            state: KeyState::Active,
            verifying: key.verifying_key(),
            signing: Some(key),
        });
        set
    }

    /// Adds a private key from PKCS#8 PEM (e.g. a file from `openssl genpkey -algorithm ed25519`).
    pub fn add_pem(&mut self, kid: &str, pem: &str, state: KeyState) -> Result<(), KeyError> {
        let signing = SigningKey::from_pkcs8_pem(pem).map_err(|err| KeyError::InvalidKey {
            kid: kid.to_owned(),
            reason: err.to_string(),
        })?;
        self.insert(kid, Some(signing.clone()), signing.verifying_key(), state)
    }

    /// Publishes a new key that verifies but does not sign yet (rotation step 1).
    pub fn publish(&mut self, kid: &str, signing: SigningKey) -> Result<(), KeyError> {
        let verifying = signing.verifying_key();
        self.insert(kid, Some(signing), verifying, KeyState::Published)
    }

    /// A verify-only key (e.g. another issuer's public key).
    pub fn add_public(&mut self, kid: &str, verifying: VerifyingKey) -> Result<(), KeyError> {
        self.insert(kid, None, verifying, KeyState::Published)
    }

    fn insert(
        &mut self,
        kid: &str,
        signing: Option<SigningKey>,
        verifying: VerifyingKey,
        state: KeyState,
    ) -> Result<(), KeyError> {
        if self.entries.iter().any(|entry| entry.kid == kid) {
            return Err(KeyError::DuplicateKid(kid.to_owned()));
        }
        if state == KeyState::Active {
            self.demote_active();
        }
        self.entries.push(Entry {
            kid: kid.to_owned(),
            state,
            signing,
            verifying,
        });
        Ok(())
    }

    fn demote_active(&mut self) {
        for entry in &mut self.entries {
            if entry.state == KeyState::Active {
                entry.state = KeyState::Published;
            }
        }
    }

    /// Makes `kid` the signing key (rotation step 2); the previous one keeps verifying.
    pub fn activate(&mut self, kid: &str) -> Result<(), KeyError> {
        let entry = self
            .entries
            .iter()
            .find(|entry| entry.kid == kid)
            .ok_or_else(|| KeyError::UnknownKid(kid.to_owned()))?;
        if entry.signing.is_none() {
            return Err(KeyError::VerifyOnly(kid.to_owned()));
        }
        self.demote_active();
        for entry in &mut self.entries {
            if entry.kid == kid {
                entry.state = KeyState::Active;
            }
        }
        Ok(())
    }

    /// Removes a key that no longer signs (rotation step 3): its tokens stop verifying.
    pub fn retire(&mut self, kid: &str) -> Result<(), KeyError> {
        match self.entries.iter().find(|entry| entry.kid == kid) {
            None => Err(KeyError::UnknownKid(kid.to_owned())),
            Some(entry) if entry.state == KeyState::Active => {
                Err(KeyError::RetiringActive(kid.to_owned()))
            }
            Some(_) => {
                self.entries.retain(|entry| entry.kid != kid);
                Ok(())
            }
        }
    }

    /// The signing key: `(kid, key)`.
    pub(crate) fn signer(&self) -> Option<(&str, EncodingKey)> {
        let entry = self
            .entries
            .iter()
            .find(|entry| entry.state == KeyState::Active)?;
        let der = entry.signing.as_ref()?.to_pkcs8_der().ok()?;
        Some((entry.kid.as_str(), EncodingKey::from_ed_der(der.as_bytes())))
    }

    pub(crate) fn verifier(&self, kid: &str) -> Option<DecodingKey> {
        let entry = self.entries.iter().find(|entry| entry.kid == kid)?;
        Some(DecodingKey::from_ed_der(entry.verifying.as_bytes()))
    }

    /// The public half of `kid`, raw (tests, tools).
    pub fn public_key(&self, kid: &str) -> Option<[u8; 32]> {
        self.entries
            .iter()
            .find(|entry| entry.kid == kid)
            .map(|entry| entry.verifying.to_bytes())
    }

    /// Every verifying key as an RFC 8037 JWK: `(kid, x)` with `kty=OKP, crv=Ed25519, alg=EdDSA`.
    pub fn jwks(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|entry| {
                (
                    entry.kid.clone(),
                    URL_SAFE_NO_PAD.encode(entry.verifying.as_bytes()),
                )
            })
            .collect()
    }

    pub fn kids(&self) -> Vec<(String, KeyState)> {
        self.entries
            .iter()
            .map(|entry| (entry.kid.clone(), entry.state))
            .collect()
    }
}

/// A new random key (OS randomness).
pub fn generate_key() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// A new random key as PKCS#8 PEM (what `openssl genpkey -algorithm ed25519` writes).
pub fn generate_key_pem() -> String {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    generate_key()
        .to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .unwrap_or_default()
}
