//! Where keys come from: configuration (`[tokens]`), PEM files, or — for development only — a
//! key generated at start-up.
//!
//! ```toml
//! [tokens]
//! issuer = "wharf-auth"
//! audience = "wharf"
//! access_ttl = "15m"
//!
//! [[tokens.keys]]            # the signing key
//! kid = "2026-11"
//! private_key_file = "/etc/wharf/keys/2026-11.pem"   # PKCS#8 PEM, `openssl genpkey -algorithm ed25519`
//! state = "active"
//!
//! [[tokens.keys]]            # a verifier that is not the issuer: public key only
//! kid = "2026-10"
//! public_key = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"   # JWK `x`, base64url
//! ```

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::access::{MAX_LEEWAY, TokenConfig, Tokens};
use crate::keys::{KeyError, KeySet, KeyState};

/// The `[tokens]` section, shared by the issuer (auth) and every verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    pub issuer: String,
    pub audience: String,
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    /// Clamped to 5 s.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    pub keys: Vec<KeyConfig>,
}

impl Default for TokensConfig {
    fn default() -> Self {
        let defaults = TokenConfig::default();
        Self {
            issuer: defaults.issuer,
            audience: defaults.audience,
            access_ttl: defaults.access_ttl,
            leeway: MAX_LEEWAY,
            keys: Vec::new(),
        }
    }
}

/// One key: a private key (inline PEM or a file) that can sign, or a public key that only
/// verifies.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyConfig {
    pub kid: String,
    pub private_key_file: Option<PathBuf>,
    pub private_key_pem: Option<String>,
    /// Raw Ed25519 public key, base64url (the JWK `x`).
    pub public_key: Option<String>,
    pub state: ConfiguredState,
}

impl std::fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("KeyConfig")
            .field("kid", &self.kid)
            .field("private_key_file", &self.private_key_file)
            .field(
                "private_key_pem",
                &self.private_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("public_key", &self.public_key)
            .field("state", &self.state)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfiguredState {
    /// Verifies and is in the JWKS; does not sign.
    #[default]
    Published,
    /// The one signing key.
    Active,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyConfigError {
    #[error(
        "no token keys are configured: add [[tokens.keys]] (see the README), or run `wharf dev`, which generates a development key"
    )]
    NoKeys,
    #[error("tokens.keys[{index}]: the kid is empty")]
    EmptyKid { index: usize },
    #[error(
        "tokens.keys[{index}] ({kid}): give exactly one of private_key_file, private_key_pem or public_key"
    )]
    Ambiguous { index: usize, kid: String },
    #[error("tokens.keys[{index}] ({kid}): cannot read {path}: {source}")]
    Read {
        index: usize,
        kid: String,
        path: String,
        source: std::io::Error,
    },
    #[error("tokens.keys[{index}] ({kid}): the public key is not 32 bytes of base64url")]
    BadPublicKey { index: usize, kid: String },
    #[error("tokens.keys[{index}] ({kid}): a public key cannot be the active (signing) key")]
    PublicActive { index: usize, kid: String },
    #[error("{count} keys are marked active; exactly one may sign")]
    SeveralActive { count: usize },
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl TokensConfig {
    pub fn token_config(&self) -> TokenConfig {
        TokenConfig {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            access_ttl: self.access_ttl,
            leeway: self.leeway,
        }
    }

    /// The keyset these settings describe. A verifier may have no active key; the issuer
    /// must have one (checked by [`Tokens::issue`] failing with `NoSigningKey`, and by auth at
    /// start-up).
    pub fn keyset(&self) -> Result<KeySet, KeyConfigError> {
        if self.keys.is_empty() {
            return Err(KeyConfigError::NoKeys);
        }
        let active = self
            .keys
            .iter()
            .filter(|key| key.state == ConfiguredState::Active)
            .count();
        if active > 1 {
            return Err(KeyConfigError::SeveralActive { count: active });
        }
        let mut set = KeySet::default();
        for (index, key) in self.keys.iter().enumerate() {
            let kid = key.kid.clone();
            if kid.trim().is_empty() {
                return Err(KeyConfigError::EmptyKid { index });
            }
            let state = match key.state {
                ConfiguredState::Active => KeyState::Active,
                ConfiguredState::Published => KeyState::Published,
            };
            match (&key.private_key_file, &key.private_key_pem, &key.public_key) {
                (Some(path), None, None) => {
                    let pem =
                        std::fs::read_to_string(path).map_err(|source| KeyConfigError::Read {
                            index,
                            kid: kid.clone(),
                            path: path.display().to_string(),
                            source,
                        })?;
                    set.add_pem(&kid, &pem, state)?;
                }
                (None, Some(pem), None) => set.add_pem(&kid, pem, state)?,
                (None, None, Some(public)) => {
                    if state == KeyState::Active {
                        return Err(KeyConfigError::PublicActive { index, kid });
                    }
                    let verifying = URL_SAFE_NO_PAD
                        .decode(public.trim())
                        .ok()
                        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
                        .ok_or_else(|| KeyConfigError::BadPublicKey {
                            index,
                            kid: kid.clone(),
                        })?;
                    set.add_public(&kid, verifying)?;
                }
                _ => return Err(KeyConfigError::Ambiguous { index, kid }),
            }
        }
        Ok(set)
    }

    /// Issuer and verifier in one.
    pub fn tokens(&self) -> Result<Tokens, KeyConfigError> {
        Ok(Tokens::new(self.keyset()?, self.token_config()))
    }

    /// Settings with exactly one key, `key`, active under `kid` (tests, tools).
    pub fn signing_with(kid: &str, key: &ed25519_dalek::SigningKey) -> Self {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        Self {
            keys: vec![KeyConfig {
                kid: kid.to_owned(),
                private_key_pem: key
                    .to_pkcs8_pem(LineEnding::LF)
                    .ok()
                    .map(|pem| pem.to_string()),
                state: ConfiguredState::Active,
                ..KeyConfig::default()
            }],
            ..Self::default()
        }
    }

    /// Adds a freshly generated active key when none is configured (`wharf dev` only: tokens
    /// it signs die with the process). Returns whether it did.
    pub fn with_development_key(&mut self) -> bool {
        if !self.keys.is_empty() {
            return false;
        }
        let pem = crate::keys::generate_key_pem();
        self.keys.push(KeyConfig {
            kid: "dev".to_owned(),
            private_key_pem: Some(pem),
            state: ConfiguredState::Active,
            ..KeyConfig::default()
        });
        true
    }
}
