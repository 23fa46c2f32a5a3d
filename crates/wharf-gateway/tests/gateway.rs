//! The gateway in process, in front of a fake upstream that counts what reaches it, with its
//! own NATS and Redis: edge authentication, shared rate limits, retries only for idempotent
//! calls, the circuit breaker, and notifications across two instances.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use prost::Message;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt;
use wharf_events::Namespace;
use wharf_gateway::{App, Deps, GatewayConfig};
use wharf_proto::wharf::auth::v1::auth_service_client::AuthServiceClient;
use wharf_proto::wharf::auth::v1::auth_service_server::{AuthService, AuthServiceServer};
use wharf_proto::wharf::auth::v1::*;
use wharf_proto::wharf::gateway::v1::notifications_client::NotificationsClient;
use wharf_proto::wharf::gateway::v1::{Notification, SubscribeRequest, SubscribeResponse};
use wharf_resilience::{BreakerConfig, Limit, RetryConfig};
use wharf_runtime::config::RedisConfig;
use wharf_testkit::serve::{Served, loopback_server};
use wharf_testkit::{TestNats, TestRedis, unique_name, wait_until};
use wharf_tokens::attacks::Forger;
use wharf_tokens::keys::generate_key;
use wharf_tokens::layer::UNAUTHENTICATED;
use wharf_tokens::{TokenConfig, TokensConfig};

// ---------------------------------------------------------------------------------------------
// A fake auth upstream.

#[derive(Debug, Clone, Default)]
struct Fake {
    calls: Arc<Mutex<HashMap<&'static str, u32>>>,
    /// Calls answered UNAVAILABLE before the upstream works again; u32::MAX = down for good.
    failing: Arc<AtomicU32>,
    seen: Arc<Mutex<Vec<http::HeaderMap>>>,
}

impl Fake {
    fn count(&self, method: &str) -> u32 {
        self.calls.lock().unwrap().get(method).copied().unwrap_or(0)
    }

    fn set_failing(&self, calls: u32) {
        self.failing.store(calls, Ordering::SeqCst);
    }

    fn hit<T>(&self, method: &'static str, request: &Request<T>) -> Result<(), Status> {
        *self.calls.lock().unwrap().entry(method).or_default() += 1;
        self.seen
            .lock()
            .unwrap()
            .push(request.metadata().clone().into_headers());
        let failing = self.failing.load(Ordering::SeqCst);
        if failing == 0 {
            return Ok(());
        }
        if failing != u32::MAX {
            self.failing.store(failing - 1, Ordering::SeqCst);
        }
        Err(Status::unavailable("fake upstream down"))
    }
}

#[tonic::async_trait]
impl AuthService for Fake {
    async fn register(
        &self,
        r: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        self.hit("Register", &r)?;
        Ok(Response::new(RegisterResponse::default()))
    }
    async fn login(&self, r: Request<LoginRequest>) -> Result<Response<LoginResponse>, Status> {
        self.hit("Login", &r)?;
        Ok(Response::new(LoginResponse::default()))
    }
    async fn refresh(
        &self,
        r: Request<RefreshRequest>,
    ) -> Result<Response<RefreshResponse>, Status> {
        self.hit("Refresh", &r)?;
        Ok(Response::new(RefreshResponse::default()))
    }
    async fn logout(&self, r: Request<LogoutRequest>) -> Result<Response<LogoutResponse>, Status> {
        self.hit("Logout", &r)?;
        Ok(Response::new(LogoutResponse::default()))
    }
    async fn logout_all(
        &self,
        r: Request<LogoutAllRequest>,
    ) -> Result<Response<LogoutAllResponse>, Status> {
        self.hit("LogoutAll", &r)?;
        Ok(Response::new(LogoutAllResponse::default()))
    }
    async fn get_jwks(
        &self,
        r: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        self.hit("GetJwks", &r)?;
        Ok(Response::new(GetJwksResponse::default()))
    }
    async fn who_am_i(
        &self,
        r: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        self.hit("WhoAmI", &r)?;
        Ok(Response::new(WhoAmIResponse::default()))
    }
}

// ---------------------------------------------------------------------------------------------
// The environment: NATS, Redis, a signing key, the fake upstream.

struct Env {
    nats: TestNats,
    _redis: TestRedis,
    redis_url: String,
    prefix: String,
    namespace: Namespace,
    key: SigningKey,
    fake: Fake,
    upstream: Served,
}

impl Env {
    async fn start() -> Self {
        let nats = TestNats::start().await.unwrap();
        let redis = TestRedis::start().await.unwrap();
        let fake = Fake::default();
        let mut server = loopback_server().await;
        server.add_service(AuthServiceServer::new(fake.clone()));
        let upstream = Served::start(server, |_| async { Ok::<(), String>(()) });
        Self {
            redis_url: redis.url(),
            nats,
            _redis: redis,
            prefix: format!("{}:", unique_name("gw")),
            namespace: Namespace::new(&unique_name("gw")),
            key: generate_key(),
            fake,
            upstream,
        }
    }

    fn config(&self) -> GatewayConfig {
        let mut config = GatewayConfig {
            session_cache_ttl: Duration::from_millis(500),
            retry: RetryConfig {
                initial_backoff: Duration::from_millis(2),
                max_backoff: Duration::from_millis(10),
                ..RetryConfig::default()
            },
            breaker: BreakerConfig {
                failure_threshold: 1000,
                ..BreakerConfig::default()
            },
            ..GatewayConfig::default()
        };
        config.upstreams.insert(
            "auth".to_owned(),
            vec![format!("http://{}", self.upstream.addr)],
        );
        config
    }

    async fn gateway(&self, config: GatewayConfig) -> Served {
        let mut app = App::build(
            Deps {
                nats: self.nats.client().await.unwrap(),
                namespace: self.namespace.clone(),
                redis: RedisConfig {
                    url: self.redis_url.clone(),
                    key_prefix: self.prefix.clone(),
                    ..RedisConfig::default()
                },
            },
            config,
            &TokensConfig::signing_with("k1", &self.key),
        )
        .await
        .unwrap();
        let mut server = loopback_server().await;
        app.register(&mut server).await;
        Served::start(server, move |stop| app.run_until_stopped(stop))
    }

    fn forger(&self) -> Forger {
        Forger::new(self.key.clone(), "k1", &TokenConfig::default())
    }

    /// A user with an active session (as auth writes it), and their access token.
    async fn session(&self) -> (String, String, String) {
        let user = unique_name("user-");
        let sid = unique_name("sid-");
        let mut redis = redis::Client::open(self.redis_url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("HSET")
            .arg(self.session_key(&sid))
            .arg(&["uid", &user, "state", "active"])
            .query_async(&mut redis)
            .await
            .unwrap();
        let token = self.forger().legitimate(&user, &sid);
        (user, sid, token)
    }

    fn session_key(&self, sid: &str) -> String {
        wharf_tokens::session::session_key(&wharf_tokens::session::store_prefix(&self.prefix), sid)
    }

    async fn revoke(&self, sid: &str) {
        let mut redis = redis::Client::open(self.redis_url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("DEL")
            .arg(self.session_key(sid))
            .query_async(&mut redis)
            .await
            .unwrap();
    }

    /// Publishes a notification as a producer would, waiting until NOTIFY holds it.
    async fn notify(&self, user: &str, title: &str) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        let notification = Notification {
            event_id: id.clone(),
            user_id: user.to_owned(),
            kind: "test".to_owned(),
            title: title.to_owned(),
            ..Notification::default()
        };
        let js = async_nats::jetstream::new(self.nats.client().await.unwrap());
        js.publish(
            self.namespace.subject(&format!("notify.user.{user}")),
            notification.encode_to_vec().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        id
    }
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn auth(addr: SocketAddr) -> AuthServiceClient<Channel> {
    AuthServiceClient::new(channel(addr).await)
}

fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn who_am_i(client: &mut AuthServiceClient<Channel>, token: &str) -> Result<(), Status> {
    client
        .who_am_i(authed(token, WhoAmIRequest::default()))
        .await
        .map(drop)
}

// ---------------------------------------------------------------------------------------------

/// Public calls pass without a token; others need a verified token of an active session. What
/// is refused never reaches the upstream; what passes carries the client's address and the
/// time left, and never a client-set `x-wharf-` header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_checks_tokens_and_sessions_before_forwarding() {
    let env = Env::start().await;
    let gw = env.gateway(env.config()).await;
    let mut client = auth(gw.addr).await;

    client
        .register(RegisterRequest::default())
        .await
        .expect("a public call passes without a token");
    assert_eq!(env.fake.count("Register"), 1);

    let refused = client.who_am_i(WhoAmIRequest::default()).await.unwrap_err();
    assert_eq!(
        (refused.code(), refused.message()),
        (Code::Unauthenticated, UNAUTHENTICATED)
    );
    let (user, sid, token) = env.session().await;
    let forger = env.forger();
    for (attack, hostile) in forger.attack_table(&user, &sid) {
        let refused = who_am_i(&mut client, &hostile).await.unwrap_err();
        assert_eq!(
            (refused.code(), refused.message()),
            (Code::Unauthenticated, UNAUTHENTICATED),
            "{attack}"
        );
    }
    let no_session = forger.legitimate(&user, "no-such-session");
    assert_eq!(
        who_am_i(&mut client, &no_session).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(env.fake.count("WhoAmI"), 0, "nothing refused was forwarded");

    let mut request = authed(&token, WhoAmIRequest::default());
    request.set_timeout(Duration::from_secs(3));
    request
        .metadata_mut()
        .insert("x-wharf-user-id", "someone-else".parse().unwrap());
    client
        .who_am_i(request)
        .await
        .expect("a legitimate token passes");
    let seen = env.fake.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.get("x-forwarded-for").unwrap(), "127.0.0.1");
    assert!(seen.get("x-wharf-user-id").is_none());
    assert_eq!(
        seen.get("authorization").unwrap().to_str().unwrap(),
        format!("Bearer {token}")
    );
    let timeout = wharf_runtime::server::layers::parse_grpc_timeout(
        seen.get("grpc-timeout").unwrap().to_str().unwrap(),
    )
    .unwrap();
    assert!(
        timeout <= Duration::from_secs(3) && timeout > Duration::from_secs(1),
        "the deadline travels: {timeout:?}"
    );

    // Revoked: refused within the cache bound (500 ms here).
    env.revoke(&sid).await;
    let revoked = Instant::now();
    wait_until(
        Duration::from_secs(5),
        "the revoked session refused",
        || async { who_am_i(&mut client.clone(), &token).await.is_err() },
    )
    .await
    .unwrap();
    assert!(
        revoked.elapsed() < Duration::from_millis(500) + Duration::from_secs(1),
        "refused after {:?}",
        revoked.elapsed()
    );
    gw.shutdown().await;
}

/// An idempotent call is retried through a blip; a call with side effects is sent once,
/// whatever happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_idempotent_calls_are_retried() {
    let env = Env::start().await;
    let gw = env.gateway(env.config()).await;
    let mut client = auth(gw.addr).await;

    env.fake.set_failing(1);
    client
        .get_jwks(GetJwksRequest::default())
        .await
        .expect("retried past one UNAVAILABLE");
    assert_eq!(env.fake.count("GetJwks"), 2);

    env.fake.set_failing(u32::MAX);
    let err = client
        .get_jwks(GetJwksRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(env.fake.count("GetJwks"), 2 + 3, "three attempts in all");

    let err = client.login(LoginRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let err = client.refresh(RefreshRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let err = client
        .register(RegisterRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        (
            env.fake.count("Login"),
            env.fake.count("Refresh"),
            env.fake.count("Register")
        ),
        (1, 1, 1),
        "calls with side effects are never retried"
    );
    gw.shutdown().await;
}

/// Consecutive failures open the circuit: calls then fail fast without reaching the
/// upstream; once it works again, a probe closes the circuit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_opens_fails_fast_and_closes() {
    let env = Env::start().await;
    let mut config = env.config();
    config.breaker = BreakerConfig {
        failure_threshold: 3,
        open_for: Duration::from_millis(300),
        max_open_for: Duration::from_secs(1),
    };
    let gw = env.gateway(config).await;
    let mut client = auth(gw.addr).await;

    env.fake.set_failing(u32::MAX);
    for _ in 0..3 {
        let err = client.login(LoginRequest::default()).await.unwrap_err();
        assert_eq!(err.message(), "fake upstream down");
    }
    let fast = client.login(LoginRequest::default()).await.unwrap_err();
    assert_eq!(fast.code(), Code::Unavailable);
    assert!(
        fast.message().contains("unavailable; retry later"),
        "{}",
        fast.message()
    );
    assert_eq!(env.fake.count("Login"), 3, "an open circuit sends nothing");

    env.fake.set_failing(0);
    wait_until(Duration::from_secs(10), "the circuit closed", || async {
        client.clone().login(LoginRequest::default()).await.is_ok()
    })
    .await
    .unwrap();
    for _ in 0..5 {
        client.login(LoginRequest::default()).await.unwrap();
    }
    gw.shutdown().await;
}

/// One user's limit is one bucket, whichever instance the calls reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_shared_by_two_instances() {
    let env = Env::start().await;
    let mut config = env.config();
    config.limits.per_user = Limit::new(4, Duration::from_secs(60));
    let a = env.gateway(config.clone()).await;
    let b = env.gateway(config).await;
    assert_ne!(a.addr.port(), b.addr.port());
    let (_, _, token) = env.session().await;
    let mut clients = [auth(a.addr).await, auth(b.addr).await];
    for i in 0..4 {
        who_am_i(&mut clients[i % 2], &token).await.unwrap();
    }
    for client in &mut clients {
        let limited = who_am_i(client, &token).await.unwrap_err();
        assert_eq!(limited.code(), Code::ResourceExhausted);
        let retry = limited
            .get_details_retry_info()
            .and_then(|info| info.retry_delay)
            .expect("retry information");
        assert!(retry > Duration::ZERO);
    }
    assert_eq!(env.fake.count("WhoAmI"), 4);
    a.shutdown().await;
    b.shutdown().await;
}

async fn next(stream: &mut tonic::Streaming<SubscribeResponse>) -> SubscribeResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a message within 10 s")
        .unwrap()
        .expect("the stream is open")
}

async fn subscribe(
    addr: SocketAddr,
    token: &str,
    last: &str,
) -> Result<tonic::Streaming<SubscribeResponse>, Status> {
    NotificationsClient::new(channel(addr).await)
        .subscribe(authed(
            token,
            SubscribeRequest {
                last_event_id: last.to_owned(),
            },
        ))
        .await
        .map(Response::into_inner)
}

fn title(response: &SubscribeResponse) -> &str {
    &response
        .notification
        .as_ref()
        .expect("a notification")
        .title
}

/// Every instance delivers every notification to its own subscribers, once; a client that
/// reconnects to the other instance with its last event id gets exactly what it missed; on
/// shutdown a stream ends with a reconnect hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_reach_every_instance_and_resume_exactly() {
    let env = Env::start().await;
    let a = env.gateway(env.config()).await;
    let b = env.gateway(env.config()).await;
    let (user, _, token) = env.session().await;
    assert_eq!(
        subscribe(a.addr, "not-a-token", "")
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    let mut on_a = subscribe(a.addr, &token, "").await.unwrap();
    let mut on_b = subscribe(b.addr, &token, "").await.unwrap();
    env.notify("someone-else", "not yours").await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(env.notify(&user, &format!("n{n}")).await);
    }
    for stream in [&mut on_a, &mut on_b] {
        for n in 1..=3 {
            assert_eq!(title(&next(stream).await), format!("n{n}"));
        }
    }

    // The client drops off A after n2 (say it missed n3 too); n4 and n5 come meanwhile.
    drop(on_a);
    ids.push(env.notify(&user, "n4").await);
    ids.push(env.notify(&user, "n5").await);
    let mut resumed = subscribe(b.addr, &token, &ids[1]).await.unwrap();
    for n in 3..=5 {
        assert_eq!(title(&next(&mut resumed).await), format!("n{n}"));
    }
    env.notify(&user, "n6").await;
    assert_eq!(
        title(&next(&mut resumed).await),
        "n6",
        "no duplicate between the replay and live delivery"
    );
    for n in 4..=6 {
        assert_eq!(title(&next(&mut on_b).await), format!("n{n}"));
    }
    assert_eq!(
        subscribe(a.addr, &token, "not-an-event-id")
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );

    b.shutdown().await;
    let last = next(&mut resumed).await;
    assert!(last.notification.is_none() && last.reconnect_after_ms > 0);
    a.shutdown().await;
}

/// `curl` receives notifications as server-sent events, and resumes with `Last-Event-ID`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_clients_receive_and_resume() {
    let env = Env::start().await;
    let gw = env.gateway(env.config()).await;
    let (user, _, token) = env.session().await;
    let url = format!("http://{}/v1/events", gw.addr);
    let curl = |last: Option<&str>| {
        let mut command = tokio::process::Command::new("curl");
        command
            .args([
                "-sS",
                "-N",
                "-i",
                "-H",
                &format!("authorization: Bearer {token}"),
            ])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(last) = last {
            command.args(["-H", &format!("last-event-id: {last}")]);
        }
        command.arg(&url);
        command.spawn().expect("curl")
    };
    let refused = tokio::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "401");

    let mut first = curl(None);
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    // The response starts once the subscription is registered (`-i` prints its head).
    let status = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("a response within 10 s")
        .unwrap()
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    loop {
        let header = lines.next_line().await.unwrap().unwrap();
        if header.trim().is_empty() {
            break;
        }
    }
    let id1 = env.notify(&user, "hello").await;
    let mut event = HashMap::new();
    while let Some(line) = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("an event within 10 s")
        .unwrap()
    {
        if line.is_empty() && event.contains_key("id") {
            break;
        }
        if let Some((field, value)) = line.split_once(':') {
            event.insert(field.to_owned(), value.trim().to_owned());
        }
    }
    assert_eq!(event["id"], id1);
    assert_eq!(event["event"], "test");
    let data: serde_json::Value = serde_json::from_str(&event["data"]).unwrap();
    assert_eq!(data["title"], "hello");
    drop(lines);
    drop(first);

    let id2 = env.notify(&user, "while away").await;
    let mut second = curl(Some(&id1));
    let mut lines = BufReader::new(second.stdout.take().unwrap()).lines();
    let mut ids = Vec::new();
    while ids.is_empty() {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the missed event within 10 s")
            .unwrap()
            .expect("the stream is open");
        if let Some(id) = line.strip_prefix("id:") {
            ids.push(id.trim().to_owned());
        }
    }
    assert_eq!(ids, [id2]);
    gw.shutdown().await;
}

/// Calls are balanced over a service's endpoints; a failing endpoint's circuit opens and the
/// others take every call, idempotent ones retried onto them meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_balanced_and_a_failing_one_is_left_out() {
    let env = Env::start().await;
    let healthy = Fake::default();
    let mut server = loopback_server().await;
    server.add_service(AuthServiceServer::new(healthy.clone()));
    let second = Served::start(server, |_| async { Ok::<(), String>(()) });
    let mut config = env.config();
    config.upstreams.insert(
        "auth".to_owned(),
        vec![
            format!("http://{}", env.upstream.addr),
            format!("http://{}", second.addr),
        ],
    );
    config.breaker.failure_threshold = 2;
    config.breaker.open_for = Duration::from_secs(60);
    let gw = env.gateway(config).await;
    let mut client = auth(gw.addr).await;

    for _ in 0..10 {
        client.get_jwks(GetJwksRequest::default()).await.unwrap();
    }
    assert_eq!(
        (env.fake.count("GetJwks"), healthy.count("GetJwks")),
        (5, 5),
        "round robin"
    );

    env.fake.set_failing(u32::MAX);
    for _ in 0..20 {
        client
            .get_jwks(GetJwksRequest::default())
            .await
            .expect("retried onto the healthy endpoint");
    }
    assert_eq!(
        env.fake.count("GetJwks"),
        5 + 2,
        "its circuit opened after two failures"
    );
    assert_eq!(healthy.count("GetJwks"), 5 + 20);
    gw.shutdown().await;
}
