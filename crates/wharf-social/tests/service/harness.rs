//! One social service per test, on its own NATS and database.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use prost_types::Timestamp;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use uuid::Uuid;
use wharf_events::consumer::ConsumerStats;
use wharf_events::{Namespace, Topology};
use wharf_outbox::RelayConfig;
use wharf_proto::Event;
use wharf_proto::wharf::auth::v1::UserRegistered;
use wharf_proto::wharf::social::v1::social_service_client::SocialServiceClient;
use wharf_proto::wharf::social::v1::{FollowRequest, ProfileCreated, ProfileCreationFailed};
use wharf_proto::wharf::trading::v1::{Side, TradeExecuted};
use wharf_social::{App, Deps, SocialConfig};
use wharf_testkit::{FreshDatabase, TestNats, wait_until};
use wharf_tokens::keys::generate_key;
use wharf_tokens::{KeyConfig, Tokens, TokensConfig};

pub const KID: &str = "test-key";
/// How long anything asynchronous may take before a test fails.
pub const WITHIN: Duration = Duration::from_secs(20);

pub struct Harness {
    _nats: TestNats,
    _db: FreshDatabase,
    pub pool: PgPool,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    issuer: Tokens,
    pub registration: Arc<ConsumerStats>,
    pub feed: Arc<ConsumerStats>,
    pub achievements: Arc<ConsumerStats>,
    pub addr: SocketAddr,
    _served: wharf_testkit::Served,
}

/// Tokens signed by `key` (the issuer's side) and the public-key-only config a verifier gets.
pub fn keys(key: &SigningKey) -> (Tokens, TokensConfig) {
    let verifier = TokensConfig {
        keys: vec![KeyConfig {
            kid: KID.to_owned(),
            public_key: Some(URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())),
            ..KeyConfig::default()
        }],
        ..TokensConfig::default()
    };
    let issuer = TokensConfig::signing_with(KID, key).tokens().unwrap();
    (issuer, verifier)
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(SocialConfig::default()).await
    }

    pub async fn start_with(config: SocialConfig) -> Self {
        let db = FreshDatabase::create().await.expect("database");
        let nats = TestNats::start().await.expect("nats");
        for schema in wharf_social::schemas() {
            wharf_runtime::db::migrate(&db.config, &schema)
                .await
                .expect("migrations");
        }
        // Social only verifies: it is given the issuer's public key, as in production.
        let (issuer, verifier) = keys(&generate_key());
        let client = nats.client().await.unwrap();
        let app = App::build(
            Deps {
                database: db.config.clone(),
                nats: client.clone(),
                namespace: Namespace::root(),
                relay: RelayConfig {
                    poll_interval: Duration::from_millis(200),
                    ..RelayConfig::default()
                },
            },
            config,
            &verifier,
        )
        .await
        .expect("social app");
        let pool = app.pool().clone();
        let registration = app.registration_stats();
        let feed = app.feed_stats();
        let achievements = app.achievement_stats();

        let mut server = wharf_testkit::loopback_server().await;
        server.add_service(app.server());
        let served = wharf_testkit::Served::start(server, move |stop| app.run_until_stopped(stop));
        Self {
            _nats: nats,
            _db: db,
            pool,
            js: jetstream::new(client.clone()),
            client,
            issuer,
            registration,
            feed,
            achievements,
            addr: served.addr,
            _served: served,
        }
    }

    pub async fn rpc(&self) -> SocialServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        SocialServiceClient::new(channel)
    }

    /// An access token for `user_id`, signed by the issuer.
    pub fn token(&self, user_id: &str) -> String {
        self.issuer
            .issue(user_id, &Uuid::now_v7().to_string(), &["user".to_owned()])
            .unwrap()
            .0
    }

    /// `message` as `user_id` calls it.
    pub fn as_user<T>(&self, user_id: &str, message: T) -> Request<T> {
        bearer(message, &self.token(user_id))
    }

    /// Publishes an event as its producer's relay would (tests stand in for auth and trading).
    pub async fn publish<E: Event>(&self, event: &E) {
        let (headers, payload) = wharf_events::envelope::encode(event, None);
        self.js
            .publish_with_headers(E::SUBJECT, headers, payload)
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Publishes `event` again under a new `Nats-Msg-Id` (the envelope's event id unchanged),
    /// as a redelivery or a replayed dead letter does: the consumer sees the same event twice.
    pub async fn publish_again<E: Event>(&self, event: &E) {
        let (mut headers, payload) = wharf_events::envelope::encode(event, None);
        headers.insert(
            wharf_events::envelope::MSG_ID,
            Uuid::now_v7().to_string().as_str(),
        );
        self.js
            .publish_with_headers(E::SUBJECT, headers, payload)
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Registers `handle` through the saga's consumer and waits for its profile.
    pub async fn register(&self, handle: &str) -> String {
        let event = registered(handle);
        self.publish(&event).await;
        let user_id = event.user_id.clone();
        wait_until(WITHIN, &format!("profile of {handle}"), || async {
            self.has_profile(&user_id).await
        })
        .await
        .unwrap();
        user_id
    }

    pub async fn has_profile(&self, user_id: &str) -> bool {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM profiles WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
            == 1
    }

    /// `follower` follows `followee` through the RPC.
    pub async fn follow(&self, follower: &str, followee: &str) {
        self.rpc()
            .await
            .follow(self.as_user(
                follower,
                FollowRequest {
                    user_id: followee.to_owned(),
                },
            ))
            .await
            .expect("follow");
    }

    /// Feed items of `user_id`, as (trade_id, actor) rows.
    pub async fn feed_rows(&self, user_id: &str) -> Vec<(Uuid, String)> {
        sqlx::query_as(
            "SELECT trade_id, actor_user_id FROM feed_items WHERE follower_id = $1 ORDER BY trade_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    /// Every message of `subject` in the SOCIAL stream, decoded.
    pub async fn social_events<M: prost::Message + Default>(&self, subject: &str) -> Vec<M> {
        let stream_name = Topology::declared(Namespace::root()).stream_name("SOCIAL");
        let Ok(mut stream) = self.js.get_stream(stream_name).await else {
            return Vec::new();
        };
        let state = stream.info().await.unwrap().state.clone();
        let mut events = Vec::new();
        if state.messages == 0 {
            return events;
        }
        for sequence in state.first_sequence..=state.last_sequence {
            let Ok(message) = stream.get_raw_message(sequence).await else {
                continue;
            };
            if message.subject.as_str() == subject {
                events.push(M::decode(message.payload.as_ref()).unwrap());
            }
        }
        events
    }

    pub async fn wait_social_events<M: prost::Message + Default>(
        &self,
        subject: &str,
        count: usize,
    ) -> Vec<M> {
        wait_until(WITHIN, &format!("{count} × {subject}"), || async {
            self.social_events::<M>(subject).await.len() >= count
        })
        .await
        .unwrap();
        self.social_events(subject).await
    }

    pub async fn created_replies(&self) -> Vec<ProfileCreated> {
        self.social_events(ProfileCreated::SUBJECT).await
    }

    pub async fn failed_replies(&self) -> Vec<ProfileCreationFailed> {
        self.social_events(ProfileCreationFailed::SUBJECT).await
    }

    /// Waits until `stats` has seen `count` deliveries, whatever became of them.
    pub async fn wait_handled(&self, stats: &Arc<ConsumerStats>, count: u64) {
        wait_until(WITHIN, &format!("{count} deliveries handled"), || {
            let stats = Arc::clone(stats);
            async move { stats.applied() + stats.duplicates() + stats.dead_lettered() >= count }
        })
        .await
        .unwrap();
    }
}

/// A registration of `handle` for a new user, as auth emits it.
pub fn registered(handle: &str) -> UserRegistered {
    UserRegistered {
        event_id: Uuid::now_v7().to_string(),
        occurred_at: Some(wharf_events::envelope::now()),
        user_id: Uuid::now_v7().to_string(),
        email: format!("{handle}@example.com"),
        handle: handle.to_owned(),
        display_name: format!("{handle} display"),
    }
}

/// A trade by `user_id` executed at `at` (Unix seconds), as trading emits it.
pub fn trade(user_id: &str, notional_minor: i64, at: i64) -> TradeExecuted {
    TradeExecuted {
        event_id: Uuid::now_v7().to_string(),
        occurred_at: Some(Timestamp {
            seconds: at,
            nanos: 0,
        }),
        account_id: Uuid::now_v7().to_string(),
        order_id: Uuid::now_v7().to_string(),
        trade_id: Uuid::now_v7().to_string(),
        user_id: user_id.to_owned(),
        instrument: "WHRF".to_owned(),
        side: Side::Buy.into(),
        quantity: 10,
        price_minor: notional_minor / 10,
        notional_minor,
        fee_minor: 1,
        currency: "USD".to_owned(),
    }
}

/// The same trade re-driven by trading's reconciliation: a new event id, the same trade.
pub fn redrive(event: &TradeExecuted) -> TradeExecuted {
    TradeExecuted {
        event_id: Uuid::now_v7().to_string(),
        ..event.clone()
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

/// The field violations of an INVALID_ARGUMENT, as (field, description).
pub fn violations(status: &Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

/// The fields named by an INVALID_ARGUMENT.
pub fn fields(status: &Status) -> Vec<String> {
    violations(status)
        .into_iter()
        .map(|(field, _)| field)
        .collect()
}
