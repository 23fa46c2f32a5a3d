//! One revenue service per test, on its own NATS and database.

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
use wharf_events::dlq::{self, StoredDeadLetter};
use wharf_events::{Namespace, Topology};
use wharf_outbox::RelayConfig;
use wharf_proto::Event;
use wharf_proto::wharf::revenue::v1::FeeRecorded;
use wharf_proto::wharf::revenue::v1::revenue_service_client::RevenueServiceClient;
use wharf_proto::wharf::trading::v1::{Side, TradeExecuted};
use wharf_revenue::ledger::Entry;
use wharf_revenue::{App, Deps, RevenueConfig};
use wharf_testkit::{FreshDatabase, TestNats, wait_until};
use wharf_tokens::attacks::Forger;
use wharf_tokens::keys::generate_key;
use wharf_tokens::{KeyConfig, TokenConfig, Tokens, TokensConfig};

pub const KID: &str = "test-key";
/// How long anything asynchronous may take before a test fails.
pub const WITHIN: Duration = Duration::from_secs(20);

pub struct Harness {
    _nats: TestNats,
    _db: FreshDatabase,
    pub pool: PgPool,
    pub js: jetstream::Context,
    /// Holds the issuer's signing key (the service only has its public key).
    pub forger: Forger,
    issuer: Tokens,
    pub stats: Arc<ConsumerStats>,
    pub addr: SocketAddr,
    _served: wharf_testkit::Served,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(RevenueConfig::default()).await
    }

    pub async fn start_with(config: RevenueConfig) -> Self {
        let db = FreshDatabase::create().await.expect("database");
        Self::start_on(config, db).await
    }

    /// A service on the database `db` (e.g. on a PostgreSQL the test kills).
    pub async fn start_on(config: RevenueConfig, db: FreshDatabase) -> Self {
        let nats = TestNats::start().await.expect("nats");
        for schema in wharf_revenue::schemas() {
            wharf_runtime::db::migrate(&db.config, &schema)
                .await
                .expect("migrations");
        }
        // Revenue only verifies: it is given the issuer's public key, as in production.
        let key: SigningKey = generate_key();
        let service_keys = TokensConfig {
            keys: vec![KeyConfig {
                kid: KID.to_owned(),
                public_key: Some(URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())),
                ..KeyConfig::default()
            }],
            ..TokensConfig::default()
        };
        let issuer = TokensConfig::signing_with(KID, &key).tokens().unwrap();
        let forger = Forger::new(key, KID, &TokenConfig::default());

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
            &service_keys,
        )
        .await
        .expect("revenue app");
        let pool = app.pool().clone();
        let stats = app.ledger_stats();

        let mut server = wharf_testkit::loopback_server().await;
        server.add_service(app.server());
        let served = wharf_testkit::Served::start(server, move |stop| app.run_until_stopped(stop));
        Self {
            _nats: nats,
            _db: db,
            pool,
            js: jetstream::new(client),
            forger,
            issuer,
            stats,
            addr: served.addr,
            _served: served,
        }
    }

    pub async fn client(&self) -> RevenueServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        RevenueServiceClient::new(channel)
    }

    /// An access token with `roles`, signed by the issuer.
    pub fn token(&self, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|role| (*role).to_owned()).collect();
        self.issuer
            .issue(
                &Uuid::now_v7().to_string(),
                &Uuid::now_v7().to_string(),
                &roles,
            )
            .unwrap()
            .0
    }

    pub fn admin<T>(&self, message: T) -> Request<T> {
        bearer(message, &self.token(&["user", "admin"]))
    }

    /// Publishes an event as its producer's relay would (tests stand in for trading).
    pub async fn publish_raw<E: Event>(&self, event: &E) {
        let (headers, payload) = wharf_events::envelope::encode(event, None);
        self.js
            .publish_with_headers(E::SUBJECT, headers, payload)
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Publishes `event` again under a new `Nats-Msg-Id` (the envelope's event id unchanged),
    /// as a replayed dead letter or a redelivery does: JetStream stores it a second time, and
    /// the consumer sees the same event twice.
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

    pub async fn entries(&self) -> Vec<Entry> {
        sqlx::query_as(
            "SELECT id, event_id, trade_id, order_id, account_id, user_id, instrument, fee_minor, \
                    currency, trade_executed_at, recorded_at \
             FROM ledger_entries ORDER BY recorded_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    pub async fn wait_entries(&self, count: usize) -> Vec<Entry> {
        wait_until(WITHIN, &format!("{count} ledger entries"), || async {
            self.entries().await.len() >= count
        })
        .await
        .unwrap();
        self.entries().await
    }

    /// Every `revenue.fee.recorded` in the REVENUE stream, with its `Nats-Msg-Id`.
    pub async fn fee_events(&self) -> Vec<(String, FeeRecorded)> {
        let stream_name = Topology::declared(Namespace::root()).stream_name("REVENUE");
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
            if message.subject.as_str() != FeeRecorded::SUBJECT {
                continue;
            }
            let msg_id = message
                .headers
                .get("Nats-Msg-Id")
                .map(|value| value.as_str().to_owned())
                .unwrap_or_default();
            let event: FeeRecorded = prost::Message::decode(message.payload.as_ref()).unwrap();
            events.push((msg_id, event));
        }
        events
    }

    pub async fn wait_fee_events(&self, count: usize) -> Vec<FeeRecorded> {
        wait_until(WITHIN, &format!("{count} revenue.fee.recorded"), || async {
            self.fee_events().await.len() >= count
        })
        .await
        .unwrap();
        self.fee_events()
            .await
            .into_iter()
            .map(|(_, event)| event)
            .collect()
    }

    pub async fn dead_letters(&self) -> Vec<StoredDeadLetter> {
        dlq::list(&self.js, &Namespace::root(), 1000)
            .await
            .unwrap_or_default()
    }

    pub async fn wait_dead_letters(&self, count: usize) -> Vec<StoredDeadLetter> {
        wait_until(WITHIN, &format!("{count} dead letters"), || async {
            self.dead_letters().await.len() >= count
        })
        .await
        .unwrap();
        self.dead_letters().await
    }

    /// Waits until the consumer has seen `count` deliveries, whatever became of them.
    pub async fn wait_handled(&self, count: u64) {
        let stats = Arc::clone(&self.stats);
        wait_until(WITHIN, &format!("{count} deliveries handled"), || {
            let stats = Arc::clone(&stats);
            async move { stats.applied() + stats.duplicates() + stats.dead_lettered() >= count }
        })
        .await
        .unwrap();
    }
}

/// A trade of `fee_minor` on `instrument` executed at `at` (Unix seconds), as trading emits it.
pub fn trade(instrument: &str, fee_minor: i64, at: i64) -> TradeExecuted {
    TradeExecuted {
        event_id: Uuid::now_v7().to_string(),
        occurred_at: Some(Timestamp {
            seconds: at,
            nanos: 0,
        }),
        account_id: Uuid::now_v7().to_string(),
        order_id: Uuid::now_v7().to_string(),
        trade_id: Uuid::now_v7().to_string(),
        user_id: Uuid::now_v7().to_string(),
        instrument: instrument.to_owned(),
        side: Side::Buy.into(),
        quantity: 10,
        price_minor: 12_500,
        notional_minor: 125_000,
        fee_minor,
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
