//! Real faults during login: NATS killed, a crash after each step, Redis killed -9 and
//! restarted. The invariant throughout: no active session without its `logged_in` event, and
//! no revocation lost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::Code;
use wharf_auth::LoginStep;
use wharf_proto::wharf::auth::v1::{RefreshRequest, WhoAmIRequest};
use wharf_testkit::wait_until;

use crate::harness::{Harness, assert_code, bearer, email, test_config};

/// NATS down: the login answers UNAVAILABLE within its deadline and leaves no key in Redis;
/// once NATS is back, logins work again without a restart.
#[tokio::test]
async fn nats_down_during_login_is_unavailable_and_leaves_no_session() {
    let mut h = Harness::start().await;
    let email = email();
    h.active_user(&email).await;

    h.nats.kill9();
    let status = assert_code(h.login(&email).await, Code::Unavailable, "NATS down");
    assert!(
        !status.message().contains("nats"),
        "no internals: {status:?}"
    );
    assert!(
        h.session_states().await.is_empty(),
        "the pending session was rolled back"
    );

    h.nats.restart().await.unwrap();
    wait_until(Duration::from_secs(30), "logins to work again", || async {
        h.login(&email).await.is_ok()
    })
    .await
    .unwrap();
    let sessions = h.session_states().await;
    assert_eq!(sessions.len(), 1);
    assert!(h.logged_in_sessions().await.contains(&sessions[0].0));
}

/// A crash (a panic that abandons the request) after each step of the login. Whatever the
/// step, every active session has its `logged_in` event, and sessions left pending are never
/// honoured and expire by themselves.
#[tokio::test]
async fn a_crash_after_any_login_step_leaves_no_active_session_without_its_event() {
    let crash_at: Arc<Mutex<Option<LoginStep>>> = Arc::new(Mutex::new(None));
    let hook = {
        let crash_at = Arc::clone(&crash_at);
        Arc::new(move |step: LoginStep| {
            if *crash_at.lock().unwrap() == Some(step) {
                panic!("injected crash after {step:?}");
            }
        })
    };
    let h = Harness::start_with(test_config(), Some(hook)).await;
    let email = email();
    h.active_user(&email).await;

    for step in [
        LoginStep::Verified,
        LoginStep::PendingWritten,
        LoginStep::Published,
        LoginStep::Promoted,
    ] {
        *crash_at.lock().unwrap() = Some(step);
        let before = h.logged_in_sessions().await.len();
        assert!(h.login(&email).await.is_err(), "{step:?}: the login died");

        let events = h.logged_in_sessions().await;
        let sessions = h.session_states().await;
        for (sid, state) in &sessions {
            if state == "active" {
                assert!(
                    events.contains(sid),
                    "{step:?}: active session {sid} without its logged_in event"
                );
            }
        }
        let published = events.len() - before;
        let active = sessions.iter().filter(|(_, s)| s == "active").count();
        let expected = match step {
            LoginStep::Verified | LoginStep::PendingWritten => (0, 0),
            LoginStep::Published => (1, 0),
            LoginStep::Promoted => (1, 1),
        };
        assert_eq!(
            (published, active),
            expected,
            "{step:?}: (events published, sessions active)"
        );

        // Sessions left pending vanish with their TTL; active ones stay.
        wait_until(
            Duration::from_secs(20),
            "pending sessions to expire",
            || async {
                h.session_states()
                    .await
                    .iter()
                    .all(|(_, state)| state == "active")
            },
        )
        .await
        .unwrap();
    }

    *crash_at.lock().unwrap() = None;
    let login = h.login(&email).await.unwrap();
    assert!(h.logged_in_sessions().await.contains(&login.session_id));
}

/// Redis killed -9: logins, refreshes and session checks answer UNAVAILABLE (fail closed),
/// the service recovers by itself once Redis is back, and what Redis had acknowledged (an
/// active session, a revocation, a rotation) survived with the shipped AOF config.
#[tokio::test]
async fn redis_kill9_fails_closed_recovers_and_keeps_revocations() {
    let mut h = Harness::start().await;
    let email = email();
    h.active_user(&email).await;
    let mut client = h.client().await;
    let kept = h.login(&email).await.unwrap().tokens.unwrap();
    let revoked = h.login(&email).await.unwrap().tokens.unwrap();
    client
        .logout(bearer(
            wharf_proto::wharf::auth::v1::LogoutRequest {},
            &revoked.access_token,
        ))
        .await
        .unwrap();
    let rotated = client
        .refresh(RefreshRequest {
            refresh_token: kept.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();

    h.redis.kill9();
    assert_code(
        h.login(&email).await,
        Code::Unavailable,
        "login without Redis",
    );
    assert_code(
        client
            .refresh(RefreshRequest {
                refresh_token: rotated.refresh_token.clone(),
            })
            .await,
        Code::Unavailable,
        "refresh without Redis",
    );
    assert_code(
        client
            .who_am_i(bearer(WhoAmIRequest {}, &rotated.access_token))
            .await,
        Code::Unavailable,
        "session check without Redis",
    );

    h.redis.restart().await.unwrap();
    wait_until(
        Duration::from_secs(30),
        "the service to recover",
        || async { h.login(&email).await.is_ok() },
    )
    .await
    .unwrap();

    client
        .who_am_i(bearer(WhoAmIRequest {}, &rotated.access_token))
        .await
        .expect("the active session survived");
    assert_code(
        client
            .who_am_i(bearer(WhoAmIRequest {}, &revoked.access_token))
            .await,
        Code::Unauthenticated,
        "the revocation survived",
    );
    assert_code(
        client
            .refresh(RefreshRequest {
                refresh_token: revoked.refresh_token,
            })
            .await,
        Code::Unauthenticated,
        "the revoked family's refresh token",
    );
    // The rotation survived too: the pre-rotation token is recognised as a replay.
    assert_code(
        client
            .refresh(RefreshRequest {
                refresh_token: kept.refresh_token,
            })
            .await,
        Code::Unauthenticated,
        "the rotated token",
    );
}
