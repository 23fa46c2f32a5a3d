//! The attack table: every hostile or broken token is refused with the same generic error,
//! while a legitimate token passes. Each row is a real token built the way an attacker would.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use wharf_tokens::keys::generate_key;
use wharf_tokens::{KeySet, TokenConfig, TokenError, Tokens};

const KID: &str = "k1";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn setup() -> (Tokens, SigningKey) {
    let key = generate_key();
    let mut keys = KeySet::default();
    keys.publish(KID, key.clone()).unwrap();
    keys.activate(KID).unwrap();
    (Tokens::new(keys, TokenConfig::default()), key)
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// A token with exactly this header and payload, signed with `key` (EdDSA).
fn forge(header: &Value, payload: &Value, key: &SigningKey) -> String {
    let signing_input = format!("{}.{}", b64(header), b64(payload));
    let signature = key.sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

fn header() -> Value {
    json!({"alg": "EdDSA", "typ": "JWT", "kid": KID})
}

fn claims() -> Value {
    let t = now();
    json!({
        "iss": "wharf-auth", "aud": "wharf", "sub": "user-1", "exp": t + 900, "nbf": t, "iat": t,
        "jti": "jti-1", "sid": "session-1", "roles": ["trader"], "typ": "access"
    })
}

fn with(mut value: Value, key: &str, replacement: Value) -> Value {
    value[key] = replacement;
    value
}

fn without(mut value: Value, key: &str) -> Value {
    value.as_object_mut().unwrap().remove(key);
    value
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
    let (tokens, key) = setup();
    let (issued, claims_issued) = tokens
        .issue("user-1", "session-1", &["trader".to_owned()])
        .unwrap();
    let identity = tokens.verify(&issued).unwrap();
    assert_eq!(identity.user_id, "user-1");
    assert_eq!(identity.session_id, "session-1");
    assert_eq!(identity.roles, vec!["trader"]);
    assert_eq!(identity.expires_at, claims_issued.exp);
    assert!(claims_issued.exp - claims_issued.iat == 900, "15 minutes");

    let forged = forge(&header(), &claims(), &key);
    assert!(tokens.verify(&forged).is_ok());
}

#[test]
fn attack_table() {
    let (tokens, key) = setup();
    let stranger = generate_key();
    let t = now();
    let public = tokens.keys().public_key(KID).unwrap();

    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": KID})),
        b64(&claims())
    );

    // HS256 "signed" with the public key, hoping the verifier uses it as an HMAC secret.
    let hs_input = format!(
        "{}.{}",
        b64(&json!({"alg": "HS256", "typ": "JWT", "kid": KID})),
        b64(&claims())
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&public).unwrap();
    mac.update(hs_input.as_bytes());
    let hs256_public = format!(
        "{hs_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );

    let good = forge(&header(), &claims(), &key);
    let (head_payload, _) = good.rsplit_once('.').unwrap();
    let bad_signature = format!("{head_payload}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));

    let cases: Vec<(&str, String)> = vec![
        ("alg: none", alg_none),
        ("HS256 signed with the public key", hs256_public),
        ("bad signature", bad_signature),
        (
            "signed by another key under our kid",
            forge(&header(), &claims(), &stranger),
        ),
        (
            "unknown kid",
            forge(&with(header(), "kid", json!("k-unknown")), &claims(), &key),
        ),
        ("no kid", forge(&without(header(), "kid"), &claims(), &key)),
        (
            "jku header",
            forge(
                &with(header(), "jku", json!("https://evil.example/jwks")),
                &claims(),
                &key,
            ),
        ),
        (
            "jwk header",
            forge(
                &with(
                    header(),
                    "jwk",
                    json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(stranger.verifying_key().as_bytes())}),
                ),
                &claims(),
                &stranger,
            ),
        ),
        (
            "x5u header",
            forge(
                &with(header(), "x5u", json!("https://evil.example/cert")),
                &claims(),
                &key,
            ),
        ),
        (
            "expired",
            forge(&header(), &with(claims(), "exp", json!(t - 60)), &key),
        ),
        (
            "nbf in the future",
            forge(&header(), &with(claims(), "nbf", json!(t + 60)), &key),
        ),
        (
            "exp as a string",
            forge(
                &header(),
                &with(claims(), "exp", json!((t + 900).to_string())),
                &key,
            ),
        ),
        (
            "nbf as a string",
            forge(
                &header(),
                &with(claims(), "nbf", json!(t.to_string())),
                &key,
            ),
        ),
        (
            "missing exp",
            forge(&header(), &without(claims(), "exp"), &key),
        ),
        (
            "missing nbf",
            forge(&header(), &without(claims(), "nbf"), &key),
        ),
        (
            "missing sub",
            forge(&header(), &without(claims(), "sub"), &key),
        ),
        (
            "wrong aud",
            forge(
                &header(),
                &with(claims(), "aud", json!("someone-else")),
                &key,
            ),
        ),
        (
            "wrong iss",
            forge(
                &header(),
                &with(claims(), "iss", json!("evil-issuer")),
                &key,
            ),
        ),
        (
            "not an access token (typ)",
            forge(&header(), &with(claims(), "typ", json!("refresh")), &key),
        ),
        (
            "an opaque refresh token",
            URL_SAFE_NO_PAD.encode([42u8; 32]),
        ),
        ("garbage", "a.b.c".to_owned()),
        ("empty", String::new()),
    ];
    for (case, token) in &cases {
        assert_refused(&tokens, token, case);
    }
}

/// Expiry within the leeway (≤ 5 s) is tolerated; beyond it is not.
#[test]
fn leeway_is_at_most_five_seconds() {
    let (tokens, key) = setup();
    let t = now();
    let just_expired = forge(&header(), &with(claims(), "exp", json!(t - 2)), &key);
    assert!(
        tokens.verify(&just_expired).is_ok(),
        "2 s of skew is tolerated"
    );
    let long_expired = forge(&header(), &with(claims(), "exp", json!(t - 7)), &key);
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
