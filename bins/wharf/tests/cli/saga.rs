//! The registration saga end to end with the real services as processes: auth and social
//! (`wharf serve`), their relays inside them, everything on the test's own NATS, Redis and
//! database.

use std::time::Duration;

use tonic::Code;
use tonic::transport::Channel;
use wharf_proto::wharf::auth::v1::auth_service_client::AuthServiceClient;
use wharf_proto::wharf::auth::v1::{LoginRequest, RegisterRequest};
use wharf_proto::wharf::social::v1::GetProfileRequest;
use wharf_proto::wharf::social::v1::social_service_client::SocialServiceClient;
use wharf_testkit::{unique_name, wait_until};

use crate::platform::{Platform, authed, buy, deposit, trading};

const PASSWORD: &str = "correct horse battery staple";

async fn auth(addr: std::net::SocketAddr) -> AuthServiceClient<Channel> {
    AuthServiceClient::new(
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
}

async fn register(client: &mut AuthServiceClient<Channel>, email: &str, handle: &str) -> String {
    client
        .register(RegisterRequest {
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
            handle: handle.to_owned(),
            ..RegisterRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .user_id
}

async fn status_of(p: &Platform, user_id: &str) -> String {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT status FROM auth.users WHERE id = '{user_id}'"
    )))
    .fetch_one(&p.pool)
    .await
    .unwrap()
}

async fn wait_status(p: &Platform, user_id: &str, status: &str) {
    wait_until(
        Duration::from_secs(60),
        &format!("user {status}"),
        || async { status_of(p, user_id).await == status },
    )
    .await
    .unwrap();
}

async fn login(
    client: &mut AuthServiceClient<Channel>,
    email: &str,
) -> Result<String, tonic::Status> {
    client
        .login(LoginRequest {
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .map(|r| r.into_inner().tokens.unwrap().access_token)
}

/// Register → social creates the profile → the user is ACTIVE and can log in; a taken handle
/// → `creation_failed` → REJECTED, and the email registers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_ends_active_or_compensated() {
    let p = Platform::start().await;
    let (_services, addr) = p.serve("auth social");
    let mut client = auth(addr).await;

    let email = format!("{}@example.com", unique_name("ada"));
    let handle = unique_name("ada_");
    let user_id = register(&mut client, &email, &handle).await;
    wait_status(&p, &user_id, "ACTIVE").await;
    let token = login(&mut client, &email).await.unwrap();
    let profile = SocialServiceClient::new(
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
    .get_profile(authed(&token, GetProfileRequest::default()))
    .await
    .unwrap()
    .into_inner()
    .profile
    .unwrap();
    assert_eq!(
        (profile.user_id.as_str(), profile.handle.as_str()),
        (user_id.as_str(), handle.as_str())
    );

    // The same handle again: social refuses it, auth compensates.
    let other = format!("{}@example.com", unique_name("bob"));
    let refused = register(&mut client, &other, &handle).await;
    wait_status(&p, &refused, "REJECTED").await;
    assert_eq!(
        login(&mut client, &other).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let retried = register(&mut client, &other, &unique_name("bob_")).await;
    wait_status(&p, &retried, "ACTIVE").await;
    login(&mut client, &other).await.unwrap();
}

/// Social down during registration: the user waits PENDING, and the saga completes by itself
/// when social returns. A registration social never answers is compensated by
/// `wharf reconcile` past the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_social_delays_the_saga_and_reconciliation_bounds_it() {
    let p = Platform::start().await;
    let (_auth, addr) = p.serve("auth");
    let mut client = auth(addr).await;
    let waiting = register(
        &mut client,
        &format!("{}@example.com", unique_name("w")),
        &unique_name("w_"),
    )
    .await;
    let abandoned = register(
        &mut client,
        &format!("{}@example.com", unique_name("a")),
        &unique_name("a_"),
    )
    .await;
    assert_eq!(status_of(&p, &waiting).await, "PENDING");

    // Past the deadline without social: reconciliation compensates what it finds PENDING.
    let output = p
        .command(&[
            "reconcile",
            "--json",
            "--set",
            "auth.saga.retry_after=0s",
            "--set",
            "auth.saga.give_up_after=1ms",
        ])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let compensated: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["invariant"] == "registration-settles")
        .map(|f| f["subject"].as_str().unwrap())
        .collect();
    assert!(compensated.contains(&abandoned.as_str()), "{report}");
    assert_eq!(status_of(&p, &abandoned).await, "REJECTED");

    // A fresh registration while social is down completes once social is back.
    let email = format!("{}@example.com", unique_name("late"));
    let late = register(&mut client, &email, &unique_name("late_")).await;
    assert_eq!(status_of(&p, &late).await, "PENDING");
    let _social = p.serve("social");
    wait_status(&p, &late, "ACTIVE").await;
    login(&mut client, &email).await.unwrap();
}

/// Social stopped: logins and orders go on without waiting for it (each within a short
/// deadline), while the events it will consume pile up for when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_orders_never_wait_for_social() {
    let p = Platform::start().await;
    let (_services, addr) = p.serve("auth trading revenue");
    let _relay = p.relay();
    let mut client = auth(addr).await;
    let email = format!("{}@example.com", unique_name("iso"));
    let user_id = register(&mut client, &email, &unique_name("iso_")).await;
    // Stand in for social's saga reply: social is down in this test.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE auth.users SET status = 'ACTIVE' WHERE id = '{user_id}'"
    )))
    .execute(&p.pool)
    .await
    .unwrap();

    let mut trading_client = trading(addr).await;
    let token = p.user();
    deposit(&mut trading_client, &token, 1_000_000_000).await;
    for n in 0..20 {
        tokio::time::timeout(Duration::from_secs(5), login(&mut client, &email))
            .await
            .expect("a login never waits for social")
            .unwrap();
        tokio::time::timeout(
            Duration::from_secs(5),
            buy(&mut trading_client, &token, &format!("iso-{n}"), 1),
        )
        .await
        .expect("an order never waits for social")
        .unwrap();
    }
    p.quiesce(Duration::from_secs(60)).await;
    p.assert_books_balance(20).await;
}
