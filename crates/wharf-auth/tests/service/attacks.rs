//! The attack table through the service: every hostile token, and every misuse of a refresh
//! or access token, is refused with UNAUTHENTICATED and the one generic message, while the
//! legitimate token of the same session passes.

use tonic::Code;
use wharf_proto::wharf::auth::v1::{
    LogoutAllRequest, LogoutRequest, RefreshRequest, WhoAmIRequest,
};
use wharf_tokens::layer::UNAUTHENTICATED;

use crate::harness::{Harness, assert_code, bearer, email};

#[tokio::test]
async fn every_hostile_token_is_refused_and_the_legitimate_one_passes() {
    let h = Harness::start().await;
    let email = email();
    let user_id = h.active_user(&email).await;
    let login = h.login(&email).await.unwrap();
    let tokens = login.tokens.unwrap();
    let mut client = h.client().await;

    // The forged twin of a real token passes: the refusals below are about the defects.
    let legitimate = h.forger.legitimate(&user_id, &login.session_id);
    client
        .who_am_i(bearer(WhoAmIRequest {}, &legitimate))
        .await
        .expect("the legitimate token");

    let mut table = h.forger.attack_table(&user_id, &login.session_id);
    table.push((
        "a refresh token as an access token",
        tokens.refresh_token.clone(),
    ));
    table.push((
        "a token of a session that does not exist",
        h.forger.legitimate(&user_id, "no-such-session"),
    ));
    for (case, token) in &table {
        let status = assert_code(
            client.who_am_i(bearer(WhoAmIRequest {}, token)).await,
            Code::Unauthenticated,
            case,
        );
        assert_eq!(status.message(), UNAUTHENTICATED, "{case}");
    }
    let missing = assert_code(
        client.who_am_i(WhoAmIRequest {}).await,
        Code::Unauthenticated,
        "no token",
    );
    assert_eq!(missing.message(), UNAUTHENTICATED);

    // An access token presented as a refresh token.
    assert_code(
        client
            .refresh(RefreshRequest {
                refresh_token: tokens.access_token.clone(),
            })
            .await,
        Code::Unauthenticated,
        "an access token as a refresh token",
    );

    // Nothing above touched the real session.
    client
        .who_am_i(bearer(WhoAmIRequest {}, &tokens.access_token))
        .await
        .expect("the session survives the attacks");
}

/// Refresh tokens die with their session: after Logout, and after LogoutAll.
#[tokio::test]
async fn refresh_after_logout_and_logout_all_is_refused() {
    let h = Harness::start().await;
    let email = email();
    h.active_user(&email).await;
    let mut client = h.client().await;
    let one = h.login(&email).await.unwrap().tokens.unwrap();
    let two = h.login(&email).await.unwrap().tokens.unwrap();

    client
        .logout(bearer(LogoutRequest {}, &one.access_token))
        .await
        .unwrap();
    let after_logout = assert_code(
        client
            .refresh(RefreshRequest {
                refresh_token: one.refresh_token,
            })
            .await,
        Code::Unauthenticated,
        "refresh after logout",
    );
    assert_eq!(after_logout.message(), UNAUTHENTICATED);

    client
        .logout_all(bearer(LogoutAllRequest {}, &two.access_token))
        .await
        .unwrap();
    let after_all = assert_code(
        client
            .refresh(RefreshRequest {
                refresh_token: two.refresh_token,
            })
            .await,
        Code::Unauthenticated,
        "refresh after LogoutAll",
    );
    assert_eq!(after_all.message(), UNAUTHENTICATED);
}
