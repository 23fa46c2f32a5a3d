//! Registration: validation, idempotency, and the saga replies (ACTIVE, or REJECTED with the
//! email freed).

use std::time::Duration;

use tonic::Code;
use tonic_types::StatusExt;
use wharf_auth::BAD_CREDENTIALS;
use wharf_auth::users::UserStatus;
use wharf_proto::Event;
use wharf_proto::wharf::auth::v1::{RegisterRequest, UserRegistered, UserStatus as ProtoStatus};
use wharf_testkit::wait_until;

use crate::harness::{Harness, PASSWORD, assert_code, email};

/// Register → PENDING (login refused with FAILED_PRECONDITION) → `auth.user.registered` leaves
/// through the outbox → social's `profile.created` → ACTIVE → login works.
#[tokio::test]
async fn a_registration_completes_through_the_saga() {
    let h = Harness::start().await;
    let email = email();
    let user_id = h.register(&email).await;

    let pending = assert_code(
        h.login(&email).await,
        Code::FailedPrecondition,
        "pending user",
    );
    assert!(pending.message().contains("registration is not complete"));

    // The relay published the registration event, with the user's full payload.
    let stream = h.js.get_stream("AUTH").await.unwrap();
    wait_until(
        Duration::from_secs(20),
        "auth.user.registered in the stream",
        || {
            let stream = stream.clone();
            async move {
                stream
                    .get_last_raw_message_by_subject(UserRegistered::SUBJECT)
                    .await
                    .is_ok()
            }
        },
    )
    .await
    .unwrap();
    let registered = stream
        .get_last_raw_message_by_subject(UserRegistered::SUBJECT)
        .await
        .unwrap();
    let event: UserRegistered = prost::Message::decode(registered.payload.as_ref()).unwrap();
    assert_eq!(event.user_id, user_id);
    assert_eq!(event.email, email);
    assert!(!event.handle.is_empty());

    h.reply_created(&user_id).await;
    h.wait_status(&user_id, UserStatus::Active).await;
    let login = h.login(&email).await.unwrap();
    assert_eq!(login.user_id, user_id);
}

/// `profile.creation_failed` → REJECTED: the user cannot log in (the generic credentials
/// error), and the email can register again.
#[tokio::test]
async fn a_failed_profile_rejects_the_user_and_frees_the_email() {
    let h = Harness::start().await;
    let email = email();
    let first = h.register(&email).await;
    h.reply_failed(&first, "handle is taken").await;
    h.wait_status(&first, UserStatus::Rejected).await;

    let refused = assert_code(
        h.login(&email).await,
        Code::Unauthenticated,
        "rejected user",
    );
    assert_eq!(refused.message(), BAD_CREDENTIALS);

    let second = h.register(&email).await;
    assert_ne!(first, second, "a new user");
    h.reply_created(&second).await;
    h.wait_status(&second, UserStatus::Active).await;
    assert_eq!(h.login(&email).await.unwrap().user_id, second);

    // A late contradicting reply for the rejected user is never applied.
    h.reply_created(&first).await;
    wait_until(
        Duration::from_secs(20),
        "the contradiction in the DLQ",
        || {
            let js = h.js.clone();
            async move {
                let Ok(mut stream) = js.get_stream("DLQ").await else {
                    return false;
                };
                stream
                    .info()
                    .await
                    .is_ok_and(|info| info.state.messages >= 1)
            }
        },
    )
    .await
    .unwrap();
    let status = wharf_auth::users::status(&h.pool, first.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(status, Some(UserStatus::Rejected));
}

/// Same key and body → the same user; same key, another body → FAILED_PRECONDITION; the same
/// email without a key → ALREADY_EXISTS.
#[tokio::test]
async fn register_is_idempotent_by_key() {
    let h = Harness::start().await;
    let mut client = h.client().await;
    let email = email();
    let request = RegisterRequest {
        idempotency_key: "reg-1".to_owned(),
        email: email.clone(),
        password: PASSWORD.to_owned(),
        handle: "first_handle".to_owned(),
        display_name: "First".to_owned(),
    };
    let first = client.register(request.clone()).await.unwrap().into_inner();
    let again = client.register(request.clone()).await.unwrap().into_inner();
    assert_eq!(first.user_id, again.user_id);
    assert_eq!(again.status, i32::from(ProtoStatus::Pending));

    let other_body = RegisterRequest {
        handle: "other_handle".to_owned(),
        ..request.clone()
    };
    let status = assert_code(
        client.register(other_body).await,
        Code::FailedPrecondition,
        "same key, other body",
    );
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "IDEMPOTENCY_KEY_REUSED"
    );
    let other_password = RegisterRequest {
        password: "another password entirely".to_owned(),
        ..request.clone()
    };
    assert_code(
        client.register(other_password).await,
        Code::FailedPrecondition,
        "same key, other password",
    );

    let no_key = RegisterRequest {
        idempotency_key: String::new(),
        email: email.to_uppercase(),
        ..request
    };
    let taken = assert_code(
        client.register(no_key).await,
        Code::AlreadyExists,
        "email taken",
    );
    let violations = taken.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "email");

    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(users, 1, "one user for all of it");
}

/// Bad input is INVALID_ARGUMENT with one violation per field, and writes nothing.
#[tokio::test]
async fn bad_registrations_name_their_fields() {
    let h = Harness::start().await;
    let mut client = h.client().await;
    let cases = [
        (
            "email",
            RegisterRequest {
                email: "not-an-email".into(),
                ..valid()
            },
        ),
        (
            "email",
            RegisterRequest {
                email: "a@b@c.com".into(),
                ..valid()
            },
        ),
        (
            "password",
            RegisterRequest {
                password: "short".into(),
                ..valid()
            },
        ),
        (
            "password",
            RegisterRequest {
                password: "x".repeat(129),
                ..valid()
            },
        ),
        (
            "handle",
            RegisterRequest {
                handle: "No Spaces".into(),
                ..valid()
            },
        ),
        (
            "handle",
            RegisterRequest {
                handle: "ab".into(),
                ..valid()
            },
        ),
        (
            "display_name",
            RegisterRequest {
                display_name: "x".repeat(65),
                ..valid()
            },
        ),
        (
            "idempotency_key",
            RegisterRequest {
                idempotency_key: "k".repeat(201),
                ..valid()
            },
        ),
    ];
    for (field, request) in cases {
        let status = assert_code(client.register(request).await, Code::InvalidArgument, field);
        let violations = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations.len(), 1, "{field}: {violations:?}");
        assert_eq!(violations[0].field, field);
    }
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(users, 0);

    // Long passphrases are fine (never truncated): 64 and 128 characters, multi-byte too.
    for password in ["p".repeat(64), "é".repeat(128)] {
        client
            .register(RegisterRequest {
                email: crate::harness::email(),
                password,
                ..valid()
            })
            .await
            .unwrap();
    }
}

fn valid() -> RegisterRequest {
    RegisterRequest {
        idempotency_key: String::new(),
        email: crate::harness::email(),
        password: PASSWORD.to_owned(),
        handle: "valid_handle".to_owned(),
        display_name: "Valid".to_owned(),
    }
}

/// A registration nobody answers is retried (its event emitted again under a new id) and,
/// past the deadline, compensated: REJECTED, the email free again. Never stuck PENDING.
#[tokio::test]
async fn reconciliation_retries_then_compensates_a_stuck_registration() {
    use wharf_auth::reconcile::{self, SagaDeadlines};

    let h = Harness::start().await;
    let email = email();
    let user_id = h.register(&email).await;
    let retry = SagaDeadlines {
        interval: Duration::ZERO,
        retry_after: Duration::ZERO,
        give_up_after: Duration::from_secs(3600),
    };
    let findings = reconcile::run(&h.pool, retry).await.unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].subject, user_id);
    assert!(
        findings[0].detail.contains("re-emitted"),
        "{:?}",
        findings[0]
    );

    // Both registration events reach the stream (the second under its own event id).
    let stream = h.js.get_stream("AUTH").await.unwrap();
    wait_until(Duration::from_secs(20), "two registration events", || {
        let mut stream = stream.clone();
        async move {
            stream
                .info()
                .await
                .is_ok_and(|info| info.state.messages == 2)
        }
    })
    .await
    .unwrap();

    let give_up = SagaDeadlines {
        give_up_after: Duration::ZERO,
        ..retry
    };
    let findings = reconcile::run(&h.pool, give_up).await.unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        findings[0].detail.contains("compensated"),
        "{:?}",
        findings[0]
    );
    h.wait_status(&user_id, UserStatus::Rejected).await;
    let again = h.register(&email).await;
    assert_ne!(again, user_id, "the email is free again");
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM reconciliation_log")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(logged, 2, "both actions are on record");
}
