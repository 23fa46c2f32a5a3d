//! One trading service per test, on its own NATS and database.

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use wharf_events::Namespace;
use wharf_outbox::RelayConfig;
use wharf_proto::Event;
use wharf_proto::wharf::trading::v1::trading_service_client::TradingServiceClient;
use wharf_proto::wharf::trading::v1::{DepositRequest, Order, PlaceOrderRequest, Side};
use wharf_testkit::{FreshDatabase, TestNats, unique_name};
use wharf_tokens::keys::generate_key;
use wharf_tokens::{Tokens, TokensConfig};
use wharf_trading::{App, TradingConfig};

pub struct Harness {
    pub nats: TestNats,
    _db: FreshDatabase,
    pub pool: PgPool,
    pub js: jetstream::Context,
    pub tokens: Tokens,
    pub addr: SocketAddr,
    _served: wharf_testkit::Served,
}

pub fn test_config() -> TradingConfig {
    TradingConfig {
        reconcile: wharf_trading::ReconcileConfig {
            interval: Duration::ZERO,
            ..Default::default()
        },
        ..TradingConfig::default()
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(test_config()).await
    }

    pub async fn start_with(config: TradingConfig) -> Self {
        let nats = TestNats::start().await.expect("nats");
        let db = FreshDatabase::create().await.expect("database");
        for schema in wharf_trading::schemas() {
            wharf_runtime::db::migrate(&db.config, &schema)
                .await
                .expect("migrations");
        }
        let key = generate_key();
        let tokens_config = TokensConfig::signing_with("k", &key);
        let client = nats.client().await.unwrap();
        let app = App::build(
            wharf_trading::Deps {
                database: db.config.clone(),
                nats: client.clone(),
                namespace: Namespace::root(),
                relay: RelayConfig {
                    poll_interval: Duration::from_millis(200),
                    ..RelayConfig::default()
                },
            },
            config,
            &tokens_config,
        )
        .await
        .expect("trading app");
        let pool = app.pool().clone();
        let mut server = wharf_testkit::loopback_server().await;
        server.add_service(app.server());
        let served = wharf_testkit::Served::start(server, move |stop| app.run_until_stopped(stop));
        Self {
            nats,
            _db: db,
            pool,
            js: jetstream::new(client),
            tokens: tokens_config.tokens().unwrap(),
            addr: served.addr,
            _served: served,
        }
    }

    pub async fn client(&self) -> TradingServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        TradingServiceClient::new(channel)
    }

    /// An access token for a new user (or an admin).
    pub fn user(&self, roles: &[&str]) -> User {
        let user_id = unique_name("user-");
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let (token, _) = self.tokens.issue(&user_id, "session", &roles).unwrap();
        User { user_id, token }
    }

    pub async fn deposit(&self, user: &User, amount: i64) -> i64 {
        self.client()
            .await
            .deposit(user.req(DepositRequest {
                idempotency_key: unique_name("dep-"),
                amount_minor: amount,
            }))
            .await
            .expect("deposit")
            .into_inner()
            .cash_minor
    }

    pub async fn order(
        &self,
        user: &User,
        instrument: &str,
        side: Side,
        quantity: i64,
    ) -> Result<Order, Status> {
        self.client()
            .await
            .place_order(user.req(PlaceOrderRequest {
                idempotency_key: unique_name("ord-"),
                instrument: instrument.to_owned(),
                side: side.into(),
                quantity,
            }))
            .await
            .map(|response| response.into_inner().order.expect("an order"))
    }

    /// Publishes an event as its producer would (tests stand in for revenue).
    pub async fn publish_raw<E: Event>(&self, event: &E) {
        let (headers, payload) = wharf_events::envelope::encode(event, None);
        self.js
            .publish_with_headers(E::SUBJECT, headers, payload)
            .await
            .unwrap()
            .await
            .unwrap();
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub user_id: String,
    pub token: String,
}

impl User {
    pub fn req<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token).parse().unwrap(),
        );
        request
    }
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
