//! One auth service per test, on its own NATS, Redis and database.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use ed25519_dalek::SigningKey;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use wharf_auth::sessions::Sessions;
use wharf_auth::users::{self, UserStatus};
use wharf_auth::{App, AuthConfig, AuthLimits, Deps, LoginStep};
use wharf_events::{Namespace, Topology};
use wharf_outbox::RelayConfig;
use wharf_proto::Event;
use wharf_proto::wharf::auth::v1::auth_service_client::AuthServiceClient;
use wharf_proto::wharf::auth::v1::{LoginRequest, LoginResponse, RegisterRequest, UserLoggedIn};
use wharf_proto::wharf::social::v1::{ProfileCreated, ProfileCreationFailed};
use wharf_resilience::Limit;
use wharf_runtime::config::RedisConfig;
use wharf_testkit::{FreshDatabase, TestNats, TestRedis, unique_name, wait_until};
use wharf_tokens::attacks::Forger;
use wharf_tokens::keys::generate_key;
use wharf_tokens::{TokenConfig, TokensConfig};

pub const PASSWORD: &str = "correct horse battery staple";
pub const KID: &str = "test-key";

/// Limits loose enough that ordinary tests never meet them.
pub fn loose_limits() -> AuthLimits {
    let loose = Limit::new(10_000, Duration::from_secs(1));
    AuthLimits {
        login_per_address: loose,
        login_failures_per_account_address: loose,
        login_failures_per_account: loose,
        register_per_address: loose,
        refresh_per_address: loose,
    }
}

pub fn test_config() -> AuthConfig {
    AuthConfig {
        pending_session_ttl: Duration::from_secs(3),
        login_publish_timeout: Duration::from_millis(1500),
        trust_forwarded_for: true,
        limits: loose_limits(),
        ..AuthConfig::default()
    }
}

pub struct Harness {
    pub nats: TestNats,
    pub redis: TestRedis,
    _db: FreshDatabase,
    pub pool: PgPool,
    pub js: jetstream::Context,
    pub sessions: Sessions,
    pub forger: Forger,
    pub passwords: wharf_auth::password::Passwords,
    pub addr: SocketAddr,
    _served: wharf_testkit::Served,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(test_config(), None).await
    }

    pub async fn start_with(
        config: AuthConfig,
        hook: Option<Arc<dyn Fn(LoginStep) + Send + Sync>>,
    ) -> Self {
        let nats = TestNats::start().await.expect("nats");
        let redis = TestRedis::start().await.expect("redis");
        let db = FreshDatabase::create().await.expect("database");
        for schema in wharf_auth::schemas() {
            wharf_runtime::db::migrate(&db.config, &schema)
                .await
                .expect("migrations");
        }
        let key: SigningKey = generate_key();
        let tokens = TokensConfig::signing_with(KID, &key);
        let forger = Forger::new(key, KID, &TokenConfig::default());
        let redis_config = RedisConfig {
            url: redis.url(),
            key_prefix: format!("{}:", unique_name("t")),
            ..RedisConfig::default()
        };
        let client = nats.client().await.unwrap();
        let mut app = App::build(
            Deps {
                database: db.config.clone(),
                nats: client.clone(),
                redis: redis_config.clone(),
                namespace: Namespace::root(),
                relay: RelayConfig {
                    poll_interval: Duration::from_millis(200),
                    ..RelayConfig::default()
                },
            },
            config,
            &tokens,
        )
        .await
        .expect("auth app");
        if let Some(hook) = hook {
            app.set_login_step_hook(hook);
        }
        let pool = app.pool().clone();
        let passwords = app.handlers().passwords().clone();
        let sessions = Sessions::new(
            redis_config.connect_lazy().unwrap(),
            format!("{}auth:", redis_config.key_prefix),
        );

        let mut server = wharf_testkit::loopback_server().await;
        server.add_service(app.server());
        let served = wharf_testkit::Served::start(server, move |stop| app.run_until_stopped(stop));
        Self {
            nats,
            redis,
            _db: db,
            pool,
            js: jetstream::new(client),
            sessions,
            forger,
            passwords,
            addr: served.addr,
            _served: served,
        }
    }

    pub async fn client(&self) -> AuthServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        AuthServiceClient::new(channel)
    }

    /// Registers a user and answers the saga as social would: the user is ACTIVE on return.
    pub async fn active_user(&self, email: &str) -> String {
        let user_id = self.register(email).await;
        self.reply_created(&user_id).await;
        self.wait_status(&user_id, UserStatus::Active).await;
        user_id
    }

    pub async fn register(&self, email: &str) -> String {
        let handle: String = unique_name("h").to_lowercase().chars().take(30).collect();
        self.client()
            .await
            .register(RegisterRequest {
                email: email.to_owned(),
                password: PASSWORD.to_owned(),
                handle,
                ..RegisterRequest::default()
            })
            .await
            .expect("register")
            .into_inner()
            .user_id
    }

    pub async fn reply_created(&self, user_id: &str) {
        let mut event = ProfileCreated {
            user_id: user_id.to_owned(),
            handle: "h".to_owned(),
            ..ProfileCreated::default()
        };
        wharf_events::envelope::stamp(&mut event);
        self.publish_raw(&event).await;
    }

    pub async fn reply_failed(&self, user_id: &str, reason: &str) {
        let mut event = ProfileCreationFailed {
            user_id: user_id.to_owned(),
            reason: reason.to_owned(),
            ..ProfileCreationFailed::default()
        };
        wharf_events::envelope::stamp(&mut event);
        self.publish_raw(&event).await;
    }

    /// Publishes an event as its producer's relay would (tests stand in for social).
    pub async fn publish_raw<E: Event>(&self, event: &E) {
        let (headers, payload) = wharf_events::envelope::encode(event, None);
        self.js
            .publish_with_headers(E::SUBJECT, headers, payload)
            .await
            .unwrap()
            .await
            .unwrap();
    }

    pub async fn wait_status(&self, user_id: &str, status: UserStatus) {
        let id = uuid::Uuid::parse_str(user_id).unwrap();
        wait_until(
            Duration::from_secs(20),
            "the saga to settle the user",
            || {
                let pool = self.pool.clone();
                async move { users::status(&pool, id).await.ok().flatten() == Some(status) }
            },
        )
        .await
        .unwrap();
    }

    pub async fn login(&self, email: &str) -> Result<LoginResponse, Status> {
        self.login_from(email, PASSWORD, "10.0.0.1").await
    }

    pub async fn login_from(
        &self,
        email: &str,
        password: &str,
        address: &str,
    ) -> Result<LoginResponse, Status> {
        let mut request = Request::new(LoginRequest {
            email: email.to_owned(),
            password: password.to_owned(),
        });
        request
            .metadata_mut()
            .insert("x-forwarded-for", address.parse().unwrap());
        self.client()
            .await
            .login(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Every `auth.user.logged_in` event in the stream, by session id.
    pub async fn logged_in_sessions(&self) -> Vec<String> {
        let stream = self
            .js
            .get_stream(Topology::declared(Namespace::root()).stream_name("AUTH"))
            .await
            .unwrap();
        let mut sessions = Vec::new();
        let info = stream.get_info().await.unwrap();
        for sequence in info.state.first_sequence..=info.state.last_sequence {
            let Ok(message) = stream.get_raw_message(sequence).await else {
                continue;
            };
            if message.subject.as_str() != UserLoggedIn::SUBJECT {
                continue;
            }
            let event: UserLoggedIn = prost::Message::decode(message.payload.as_ref()).unwrap();
            assert_eq!(
                message
                    .headers
                    .get("Nats-Msg-Id")
                    .map(|value| value.as_str().to_owned()),
                Some(event.session_id.clone()),
                "Nats-Msg-Id is the session id"
            );
            sessions.push(event.session_id);
        }
        sessions
    }

    /// Every session key in Redis, with its state.
    pub async fn session_states(&self) -> Vec<(String, String)> {
        let mut redis = redis::Client::open(self.redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let pattern = format!("{}*", self.sessions.session_key(""));
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut redis)
            .await
            .unwrap();
        let mut states = Vec::new();
        for key in keys {
            let sid = key.rsplit(':').next().unwrap().to_owned();
            if let Some(state) = self.sessions.state(&sid).await.unwrap() {
                states.push((sid, state));
            }
        }
        states
    }
}

/// `request` with `authorization: Bearer <token>`.
pub fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

pub fn assert_code<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    case: &str,
) -> Status {
    match result {
        Err(status) if status.code() == code => status,
        other => panic!("{case}: expected {code:?}, got {other:?}"),
    }
}

pub fn email() -> String {
    format!("{}@example.com", unique_name("u").to_lowercase())
}
