//! The attack table: every hostile or broken token is refused with the same generic error,
//! while a legitimate token passes. Each row is a real token built the way an attacker would.

use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use serde_json::json;
use wharf_tokens::attacks::{Forger, with};
use wharf_tokens::keys::generate_key;
use wharf_tokens::{KeySet, TokenConfig, TokenError, Tokens};

const KID: &str = "k1";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn setup() -> (Tokens, Forger) {
    let key: SigningKey = generate_key();
    let mut keys = KeySet::default();
    keys.publish(KID, key.clone()).unwrap();
    keys.activate(KID).unwrap();
    let forger = Forger::new(key, KID, &TokenConfig::default());
    (Tokens::new(keys, TokenConfig::default()), forger)
}

fn assert_refused(tokens: &Tokens, token: &str, case: &str) {
    match tokens.verify(token) {
        Err(err @ TokenError::Invalid { .. }) => {
            assert_eq!(err.to_string(), "invalid or expired credentials", "{case}");
        }
        other => panic!("{case}: expected a refusal, got {other:?}"),
    }
}

/// The legitimate token, issued and forged alike, verifies: the table's refusals are not a
/// verifier that refuses everything.
#[test]
fn legitimate_tokens_pass() {
    let (tokens, forger) = setup();
    let (issued, claims_issued) = tokens
        .issue("user-1", "session-1", &["trader".to_owned()])
        .unwrap();
    let identity = tokens.verify(&issued).unwrap();
    assert_eq!(identity.user_id, "user-1");
    assert_eq!(identity.session_id, "session-1");
    assert_eq!(identity.roles, vec!["trader"]);
    assert_eq!(identity.expires_at, claims_issued.exp);
    assert!(claims_issued.exp - claims_issued.iat == 900, "15 minutes");

    let forged = forger.legitimate("user-1", "session-1");
    assert!(tokens.verify(&forged).is_ok());
}

#[test]
fn attack_table() {
    let (tokens, forger) = setup();
    let table = forger.attack_table("user-1", "session-1");
    assert!(table.len() >= 20, "the whole table runs");
    for (case, token) in &table {
        assert_refused(&tokens, token, case);
    }
}

/// Expiry within the leeway (≤ 5 s) is tolerated; beyond it is not.
#[test]
fn leeway_is_at_most_five_seconds() {
    let (tokens, forger) = setup();
    let t = now();
    let claims = || forger.claims("user-1", "session-1");
    let just_expired = forger.forge(&forger.header(), &with(claims(), "exp", json!(t - 2)));
    assert!(
        tokens.verify(&just_expired).is_ok(),
        "2 s of skew is tolerated"
    );
    let long_expired = forger.forge(&forger.header(), &with(claims(), "exp", json!(t - 7)));
    assert_refused(&tokens, &long_expired, "7 s past expiry");

    let generous = Tokens::new(
        KeySet::generate("x"),
        TokenConfig {
            leeway: std::time::Duration::from_secs(300),
            ..TokenConfig::default()
        },
    );
    assert_eq!(
        generous.config().leeway.as_secs(),
        5,
        "configured leeway is clamped"
    );
}

/// Rotation: a new key is published (verifies, does not sign), then activated (signs), while
/// tokens of the old key keep verifying until it is retired.
#[test]
fn rotation_never_rejects_a_valid_token() {
    let (mut tokens, _) = setup();
    let (old_token, _) = tokens.issue("user-1", "session-1", &[]).unwrap();

    tokens.keys_mut().publish("k2", generate_key()).unwrap();
    let (still_old, _) = tokens.issue("user-1", "session-1", &[]).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&still_old)
            .unwrap()
            .kid
            .as_deref(),
        Some(KID),
        "published keys do not sign"
    );
    assert_eq!(
        tokens.keys().jwks().len(),
        2,
        "but they are in the JWKS before they sign"
    );

    tokens.keys_mut().activate("k2").unwrap();
    let (new_token, _) = tokens.issue("user-1", "session-1", &[]).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&new_token)
            .unwrap()
            .kid
            .as_deref(),
        Some("k2")
    );
    assert!(
        tokens.verify(&old_token).is_ok(),
        "old tokens verify after rotation"
    );
    assert!(tokens.verify(&new_token).is_ok());

    assert!(
        tokens.keys_mut().retire("k2").is_err(),
        "the active key cannot be retired"
    );
    tokens.keys_mut().retire(KID).unwrap();
    assert_refused(&tokens, &old_token, "token of a retired key");
    assert!(tokens.verify(&new_token).is_ok());
}
