//! Two gateways (`wharf serve gateway`) in front of the real services as processes: a trade
//! made through one reaches its trader, subscribed on the other, as a notification; a killed
//! upstream opens the circuit and its return closes it; a gateway that stops tells its
//! streams to reconnect.

use std::net::SocketAddr;
use std::time::Duration;

use prost::Message;
use tonic::transport::Channel;
use tonic::{Code, Request};
use wharf_proto::wharf::auth::v1::auth_service_client::AuthServiceClient;
use wharf_proto::wharf::auth::v1::{LoginRequest, RegisterRequest};
use wharf_proto::wharf::gateway::v1::notifications_client::NotificationsClient;
use wharf_proto::wharf::gateway::v1::{Notification, SubscribeRequest, SubscribeResponse};
use wharf_proto::wharf::trading::v1::GetAccountRequest;
use wharf_testkit::{unique_name, wait_until};

use crate::helpers::Running;
use crate::platform::{Platform, authed, buy, deposit, trading};

const PASSWORD: &str = "correct horse battery staple";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve_on(p: &Platform, services: &str, port: u16) -> Running {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["serve"];
    args.extend(services.split(' '));
    args.extend(["--listen", &listen]);
    let mut running = Running::spawn(p.command(&args));
    running.wait_for_line("listening on", Duration::from_secs(60));
    running
}

/// `wharf serve gateway` with every service's upstream, and a breaker that opens quickly.
fn gateway(p: &Platform, auth: SocketAddr, trading: SocketAddr) -> (Running, SocketAddr) {
    let sets = [
        format!("gateway.upstreams.auth=http://{auth}"),
        format!("gateway.upstreams.social=http://{auth}"),
        format!("gateway.upstreams.trading=http://{trading}"),
        "gateway.breaker.failure_threshold=2".to_owned(),
        "gateway.breaker.open_for=300ms".to_owned(),
        "gateway.retry.max_attempts=1".to_owned(),
    ];
    let mut args = vec!["serve", "gateway", "--listen", "127.0.0.1:0"];
    for set in &sets {
        args.extend(["--set", set.as_str()]);
    }
    let mut running = Running::spawn(p.command(&args));
    let line = running.wait_for_line("listening on", Duration::from_secs(60));
    let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
    (running, addr)
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn next(stream: &mut tonic::Streaming<SubscribeResponse>) -> SubscribeResponse {
    tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("a message within 30 s")
        .unwrap()
        .expect("the stream is open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_in_front_of_the_real_services() {
    let p = Platform::start().await;
    let (_auth_social, auth_addr) = p.serve("auth social");
    let trading_port = free_port();
    let mut trading_process = serve_on(&p, "trading", trading_port);
    let trading_addr: SocketAddr = format!("127.0.0.1:{trading_port}").parse().unwrap();
    let _relay = p.relay();
    let (mut gateway_a, a) = gateway(&p, auth_addr, trading_addr);
    let (_gateway_b, b) = gateway(&p, auth_addr, trading_addr);

    // Registered and logged in through B: the saga runs behind it.
    let mut auth_b = AuthServiceClient::new(channel(b).await);
    let email = format!("{}@example.com", unique_name("gw"));
    let user_id = auth_b
        .register(RegisterRequest {
            email: email.clone(),
            password: PASSWORD.to_owned(),
            handle: unique_name("gw_"),
            ..RegisterRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .user_id;
    let login = || {
        let mut client = auth_b.clone();
        let email = email.clone();
        async move {
            client
                .login(LoginRequest {
                    email,
                    password: PASSWORD.to_owned(),
                })
                .await
        }
    };
    wait_until(Duration::from_secs(60), "the user is ACTIVE", || async {
        login().await.is_ok()
    })
    .await
    .unwrap();
    let token = login()
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap()
        .access_token;

    // Subscribed on A; the trade goes through B only.
    let mut on_a = NotificationsClient::new(channel(a).await)
        .subscribe(authed(&token, SubscribeRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let mut trading_b = trading(b).await;
    deposit(&mut trading_b, &token, 1_000_000).await;
    buy(&mut trading_b, &token, &unique_name("order-"), 1)
        .await
        .unwrap();
    let first = next(&mut on_a).await.notification.expect("a notification");
    assert_eq!(first.user_id, user_id);
    assert!(
        first.title.contains("Achievement unlocked"),
        "{}",
        first.title
    );
    // Exactly once: the next thing A sends is a later notification, not the same again.
    let marker = Notification {
        event_id: uuid::Uuid::now_v7().to_string(),
        user_id: user_id.clone(),
        kind: "marker".to_owned(),
        ..Notification::default()
    };
    let nats = p.nats.client().await.unwrap();
    nats.publish(
        format!("notify.user.{user_id}"),
        marker.encode_to_vec().into(),
    )
    .await
    .unwrap();
    nats.flush().await.unwrap();
    assert_eq!(
        next(&mut on_a).await.notification.unwrap().event_id,
        marker.event_id
    );

    // Trading killed: calls fail UNAVAILABLE, then fast once the circuit opens; it comes
    // back on the same port and the circuit closes.
    let trading_a = trading(a).await;
    let get_account = || {
        let mut client = trading_a.clone();
        let request: Request<GetAccountRequest> = authed(&token, GetAccountRequest::default());
        async move { client.get_account(request).await }
    };
    get_account().await.unwrap();
    trading_process.signal("KILL");
    trading_process.wait_exit(Duration::from_secs(10));
    let mut fast_failures = 0;
    for _ in 0..4 {
        let err = get_account().await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        if err.message().contains("is unavailable; retry later") {
            fast_failures += 1;
        }
    }
    assert!(fast_failures >= 1, "the circuit opened after two failures");
    let _trading_again = serve_on(&p, "trading", trading_port);
    wait_until(Duration::from_secs(30), "the circuit closed", || async {
        get_account().await.is_ok()
    })
    .await
    .unwrap();

    // A stops: its stream is told to reconnect, and the process drains cleanly.
    gateway_a.signal("TERM");
    let last = next(&mut on_a).await;
    assert!(last.notification.is_none() && last.reconnect_after_ms > 0);
    assert!(gateway_a.wait_exit(Duration::from_secs(30)).success());
}
