//! Keys from configuration: files, inline PEM, public-only verifiers, and the mistakes an
//! operator can make, each refused with a message naming the key.

use std::io::Write;

use wharf_tokens::config::ConfiguredState;
use wharf_tokens::keys::generate_key_pem;
use wharf_tokens::{KeyConfig, KeyConfigError, TokensConfig};

fn key(kid: &str, state: ConfiguredState) -> KeyConfig {
    KeyConfig {
        kid: kid.to_owned(),
        private_key_pem: Some(generate_key_pem()),
        state,
        ..KeyConfig::default()
    }
}

#[test]
fn a_key_file_signs_and_a_public_key_elsewhere_verifies() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(generate_key_pem().as_bytes()).unwrap();
    let issuer = TokensConfig {
        keys: vec![KeyConfig {
            kid: "k1".to_owned(),
            private_key_file: Some(file.path().to_owned()),
            state: ConfiguredState::Active,
            ..KeyConfig::default()
        }],
        ..TokensConfig::default()
    }
    .tokens()
    .unwrap();
    let (token, _) = issuer.issue("user-1", "session-1", &[]).unwrap();

    // A verifier configured with only the JWK `x` of the issuer's key.
    let (kid, x) = issuer.keys().jwks().remove(0);
    let verifier = TokensConfig {
        keys: vec![KeyConfig {
            kid,
            public_key: Some(x),
            ..KeyConfig::default()
        }],
        ..TokensConfig::default()
    }
    .tokens()
    .unwrap();
    assert_eq!(verifier.verify(&token).unwrap().user_id, "user-1");
    assert!(
        verifier.issue("user-1", "session-1", &[]).is_err(),
        "a verify-only keyset cannot sign"
    );
}

#[test]
fn configuration_mistakes_are_named() {
    let none = TokensConfig::default().keyset().unwrap_err();
    assert!(matches!(none, KeyConfigError::NoKeys));
    assert!(none.to_string().contains("wharf dev"));

    let two_active = TokensConfig {
        keys: vec![
            key("a", ConfiguredState::Active),
            key("b", ConfiguredState::Active),
        ],
        ..TokensConfig::default()
    };
    assert!(matches!(
        two_active.keyset().unwrap_err(),
        KeyConfigError::SeveralActive { count: 2 }
    ));

    let mut both = key("c", ConfiguredState::Active);
    both.public_key = Some("x".to_owned());
    let err = TokensConfig {
        keys: vec![both],
        ..TokensConfig::default()
    }
    .keyset()
    .unwrap_err();
    assert!(err.to_string().contains("(c)"), "{err}");

    let missing = TokensConfig {
        keys: vec![KeyConfig {
            kid: "d".to_owned(),
            private_key_file: Some("/nonexistent/d.pem".into()),
            state: ConfiguredState::Active,
            ..KeyConfig::default()
        }],
        ..TokensConfig::default()
    }
    .keyset()
    .unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/d.pem"),
        "{missing}"
    );

    let bad_public = TokensConfig {
        keys: vec![KeyConfig {
            kid: "e".to_owned(),
            public_key: Some("not-a-key".to_owned()),
            ..KeyConfig::default()
        }],
        ..TokensConfig::default()
    }
    .keyset()
    .unwrap_err();
    assert!(matches!(bad_public, KeyConfigError::BadPublicKey { .. }));

    let garbage_pem = TokensConfig {
        keys: vec![KeyConfig {
            kid: "f".to_owned(),
            private_key_pem: Some(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_owned(),
            ),
            state: ConfiguredState::Active,
            ..KeyConfig::default()
        }],
        ..TokensConfig::default()
    }
    .keyset()
    .unwrap_err();
    assert!(garbage_pem.to_string().contains("key f"), "{garbage_pem}");
}

#[test]
fn a_development_key_is_added_only_when_none_is_configured() {
    let mut empty = TokensConfig::default();
    assert!(empty.with_development_key());
    let tokens = empty.tokens().unwrap();
    assert!(tokens.issue("u", "s", &[]).is_ok());

    let mut configured = TokensConfig {
        keys: vec![key("prod", ConfiguredState::Active)],
        ..TokensConfig::default()
    };
    assert!(!configured.with_development_key());
    assert_eq!(configured.keys.len(), 1);
    let debug = format!("{:?}", configured.keys[0]);
    assert!(
        !debug.contains("BEGIN"),
        "key material must not be printed: {debug}"
    );
}
