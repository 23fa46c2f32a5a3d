//! Login, refresh rotation, revocation, identity and key discovery, end to end.

use tonic::Code;
use wharf_auth::BAD_CREDENTIALS;
use wharf_proto::wharf::auth::v1::{
    GetJwksRequest, LogoutAllRequest, LogoutRequest, RefreshRequest, WhoAmIRequest,
};
use wharf_tokens::refresh;

use crate::harness::{Harness, KID, assert_code, bearer, email};

/// A login returns a 15-minute access token and a 256-bit refresh token, publishes
/// `auth.user.logged_in` with `Nats-Msg-Id` = session id, and leaves the session active.
#[tokio::test]
async fn login_issues_tokens_after_its_event_is_acknowledged() {
    let h = Harness::start().await;
    let email = email();
    let user_id = h.active_user(&email).await;
    let login = h.login(&email).await.unwrap();
    let tokens = login.tokens.unwrap();
    assert_eq!(login.user_id, user_id);
    assert_eq!(tokens.token_type, "Bearer");
    let ttl = tokens.access_expires_at.unwrap().seconds
        - i64::try_from(wharf_auth::sessions::unix_now()).unwrap();
    assert!((895..=900).contains(&ttl), "15 minutes, got {ttl} s");
    let refresh_ttl = tokens.refresh_expires_at.unwrap().seconds
        - i64::try_from(wharf_auth::sessions::unix_now()).unwrap();
    assert!(
        (7 * 86_400 - 5..=7 * 86_400).contains(&refresh_ttl),
        "7 days, got {refresh_ttl} s"
    );
    assert!(refresh::looks_like_refresh_token(&tokens.refresh_token));

    assert_eq!(h.logged_in_sessions().await, vec![login.session_id.clone()]);
    assert_eq!(
        h.session_states().await,
        vec![(login.session_id.clone(), "active".to_owned())]
    );

    let me = h
        .client()
        .await
        .who_am_i(bearer(WhoAmIRequest {}, &tokens.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.user_id, user_id);
    assert_eq!(me.session_id, login.session_id);
    assert_eq!(me.roles, vec!["user"]);
}

/// An unknown email and a wrong password get the same code and message.
#[tokio::test]
async fn credential_failures_are_indistinguishable() {
    let h = Harness::start().await;
    let email = email();
    h.active_user(&email).await;
    let wrong = assert_code(
        h.login_from(&email, "wrong password!", "10.0.0.1").await,
        Code::Unauthenticated,
        "wrong password",
    );
    let unknown = assert_code(
        h.login_from("nobody@example.com", "wrong password!", "10.0.0.1")
            .await,
        Code::Unauthenticated,
        "unknown email",
    );
    assert_eq!(wrong.message(), BAD_CREDENTIALS);
    assert_eq!(unknown.message(), BAD_CREDENTIALS);
    assert!(h.session_states().await.is_empty());
}

/// Refresh rotates; replaying the rotated token revokes the whole family, so the newest
/// refresh token and the session's access tokens die with it.
#[tokio::test]
async fn replaying_a_rotated_refresh_token_revokes_the_family() {
    let h = Harness::start().await;
    let email = email();
    h.active_user(&email).await;
    let first = h.login(&email).await.unwrap().tokens.unwrap();
    let mut client = h.client().await;

    let second = client
        .refresh(RefreshRequest {
            refresh_token: first.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(
        second.refresh_expires_at, first.refresh_expires_at,
        "rotation keeps the absolute expiry"
    );
    client
        .who_am_i(bearer(WhoAmIRequest {}, &second.access_token))
        .await
        .unwrap();

    assert_code(
        client
            .refresh(RefreshRequest {
                refresh_token: first.refresh_token.clone(),
            })
            .await,
        Code::Unauthenticated,
        "the rotated token replayed",
    );
    assert_code(
        client
            .refresh(RefreshRequest {
                refresh_token: second.refresh_token.clone(),
            })
            .await,
        Code::Unauthenticated,
        "the newest token of a revoked family",
    );
    assert_code(
        client
            .who_am_i(bearer(WhoAmIRequest {}, &second.access_token))
            .await,
        Code::Unauthenticated,
        "an access token of the revoked session",
    );
    assert!(h.session_states().await.is_empty());
}

/// Logout revokes one session; LogoutAll every session of the user, and no one else's.
#[tokio::test]
async fn logout_and_logout_all_revoke() {
    let h = Harness::start().await;
    let (alice, bob) = (email(), email());
    h.active_user(&alice).await;
    h.active_user(&bob).await;
    let mut client = h.client().await;
    let a1 = h.login(&alice).await.unwrap().tokens.unwrap();
    let a2 = h.login(&alice).await.unwrap().tokens.unwrap();
    let a3 = h.login(&alice).await.unwrap().tokens.unwrap();
    let b1 = h.login(&bob).await.unwrap().tokens.unwrap();

    client
        .logout(bearer(LogoutRequest {}, &a1.access_token))
        .await
        .unwrap();
    for (case, result) in [
        (
            "refresh after logout",
            client
                .refresh(RefreshRequest {
                    refresh_token: a1.refresh_token.clone(),
                })
                .await
                .map(|_| ()),
        ),
        (
            "access after logout",
            client
                .who_am_i(bearer(WhoAmIRequest {}, &a1.access_token))
                .await
                .map(|_| ()),
        ),
    ] {
        assert_code(result, Code::Unauthenticated, case);
    }
    client
        .who_am_i(bearer(WhoAmIRequest {}, &a2.access_token))
        .await
        .expect("the other sessions live on");

    let revoked = client
        .logout_all(bearer(LogoutAllRequest {}, &a2.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.sessions_revoked, 2);
    for tokens in [&a2, &a3] {
        assert_code(
            client
                .refresh(RefreshRequest {
                    refresh_token: tokens.refresh_token.clone(),
                })
                .await,
            Code::Unauthenticated,
            "refresh after LogoutAll",
        );
        assert_code(
            client
                .who_am_i(bearer(WhoAmIRequest {}, &tokens.access_token))
                .await,
            Code::Unauthenticated,
            "access after LogoutAll",
        );
    }
    client
        .who_am_i(bearer(WhoAmIRequest {}, &b1.access_token))
        .await
        .expect("bob is not logged out");
}

/// The JWKS holds the signing key as an Ed25519 JWK, and it verifies issued tokens.
#[tokio::test]
async fn jwks_publishes_the_verifying_key() {
    let h = Harness::start().await;
    let email = email();
    h.active_user(&email).await;
    let access = h.login(&email).await.unwrap().tokens.unwrap().access_token;
    let jwks = h
        .client()
        .await
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(jwks.keys.len(), 1);
    let jwk = &jwks.keys[0];
    assert_eq!(
        (
            jwk.kid.as_str(),
            jwk.kty.as_str(),
            jwk.crv.as_str(),
            jwk.alg.as_str()
        ),
        (KID, "OKP", "Ed25519", "EdDSA")
    );
    let verifier = wharf_tokens::TokensConfig {
        keys: vec![wharf_tokens::KeyConfig {
            kid: jwk.kid.clone(),
            public_key: Some(jwk.x.clone()),
            ..wharf_tokens::KeyConfig::default()
        }],
        ..wharf_tokens::TokensConfig::default()
    }
    .tokens()
    .unwrap();
    verifier
        .verify(&access)
        .expect("a verifier built from the JWKS");
}
