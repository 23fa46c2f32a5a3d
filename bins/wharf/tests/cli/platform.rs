//! Trading and revenue as separate processes (`wharf serve`, `wharf relay`), sharing one NATS
//! and one database of the test's own, for the end-to-end and chaos tests.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Request, Status};
use wharf_proto::wharf::trading::v1::trading_service_client::TradingServiceClient;
use wharf_proto::wharf::trading::v1::{DepositRequest, Order, PlaceOrderRequest, Side};
use wharf_testkit::{FreshDatabase, TestNats, TestRedis, unique_name, wait_until};
use wharf_tokens::config::ConfiguredState;
use wharf_tokens::keys::generate_key;
use wharf_tokens::{KeyConfig, Tokens, TokensConfig};

use crate::helpers::{Running, wharf};

pub struct Platform {
    pub nats: TestNats,
    pub redis: TestRedis,
    _db: FreshDatabase,
    pub pool: PgPool,
    config: tempfile::NamedTempFile,
    pub tokens: Tokens,
}

// The URLs go on the command line: `--set` outranks the `WHARF_*` environment the test
// command exports for the shared stack, which would outrank a config file.

impl Platform {
    /// NATS, a database migrated by `wharf migrate`, and a config file every process reads:
    /// relays off inside the services (a separate `wharf relay` publishes both schemas), a
    /// short ack wait so a killed consumer's events come back quickly.
    pub async fn start() -> Self {
        let nats = TestNats::start().await.unwrap();
        let redis = TestRedis::start().await.unwrap();
        let db = FreshDatabase::create().await.unwrap();
        let pem = generate_key()
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap()
            .to_string();
        let mut config = tempfile::NamedTempFile::new().unwrap();
        write!(
            config,
            r#"
[relay]
poll_interval = "200ms"
[trading]
relay = false
[trading.reconcile]
interval = "0s"
[revenue]
relay = false
consumer_ack_wait = "2s"
consumer_concurrency = 8
[[tokens.keys]]
kid = "test"
state = "active"
private_key_pem = """
{pem}"""
"#,
        )
        .unwrap();
        let tokens = TokensConfig {
            keys: vec![KeyConfig {
                kid: "test".to_owned(),
                private_key_pem: Some(pem),
                state: ConfiguredState::Active,
                ..KeyConfig::default()
            }],
            ..TokensConfig::default()
        }
        .tokens()
        .unwrap();
        let platform = Self {
            pool: wharf_runtime::db::connect_lazy(&db.config, "public").unwrap(),
            nats,
            redis,
            _db: db,
            config,
            tokens,
        };
        let migrated = platform.command(&["migrate"]).status().unwrap();
        assert!(migrated.success(), "wharf migrate");
        platform
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = wharf();
        command
            .args(args)
            .arg("--config")
            .arg(self.config.path())
            .args(["--set", &format!("database.url={}", self._db.config.url)])
            .args(["--set", &format!("nats.url={}", self.nats.url())])
            .args(["--set", &format!("redis.url={}", self.redis.url())])
            .args(["--set", "telemetry.log_filter=warn"])
            .stderr(Stdio::null());
        command
    }

    /// `wharf serve SERVICE...` (space-separated) on a free port; returns the process and its
    /// address.
    pub fn serve(&self, services: &str) -> (Running, SocketAddr) {
        let mut args = vec!["serve"];
        args.extend(services.split(' '));
        args.extend(["--listen", "127.0.0.1:0"]);
        let mut running = Running::spawn(self.command(&args));
        let line = running.wait_for_line("listening on", Duration::from_secs(60));
        let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
        (running, addr)
    }

    /// `wharf relay` for both producing schemas.
    pub fn relay(&self) -> Running {
        let mut running =
            Running::spawn(self.command(&["relay", "--schema", "trading", "--schema", "revenue"]));
        running.wait_for_line("relay running", Duration::from_secs(60));
        running
    }

    pub fn user(&self) -> String {
        let (token, _) = self
            .tokens
            .issue(&unique_name("user-"), "session", &[])
            .unwrap();
        token
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Waits until every order is SETTLED and both outboxes are empty.
    pub async fn quiesce(&self, within: Duration) {
        wait_until(within, "every order settled and the outboxes empty", || async {
            self.scalar(
                "SELECT (SELECT count(*) FROM trading.orders WHERE state <> 'SETTLED') \
                      + (SELECT count(*) FROM trading.outbox) + (SELECT count(*) FROM revenue.outbox)",
            )
            .await
                == 0
        })
        .await
        .unwrap();
    }

    /// The invariants of "nothing lost, nothing applied twice" across both services.
    pub async fn assert_books_balance(&self, orders: i64) {
        assert_eq!(
            self.scalar("SELECT count(*) FROM trading.orders").await,
            orders
        );
        assert_eq!(
            self.scalar("SELECT count(*) FROM trading.orders WHERE state = 'SETTLED'")
                .await,
            orders,
            "every order settled"
        );
        assert_eq!(
            self.scalar(
                "SELECT count(*) FROM trading.trades t WHERE (SELECT count(*) FROM revenue.ledger_entries l WHERE l.trade_id = t.id) <> 1"
            )
            .await,
            0,
            "every trade has exactly one ledger entry"
        );
        assert_eq!(
            self.scalar("SELECT count(*) FROM revenue.ledger_entries")
                .await,
            orders,
            "nothing else is in the ledger"
        );
        assert_eq!(
            self.scalar("SELECT COALESCE(SUM(fee_minor), 0)::bigint FROM revenue.ledger_entries")
                .await,
            self.scalar("SELECT COALESCE(SUM(fee_minor), 0)::bigint FROM trading.trades")
                .await,
            "sum(ledger) = sum(fees)"
        );
    }
}

pub async fn trading(addr: SocketAddr) -> TradingServiceClient<Channel> {
    TradingServiceClient::new(
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
}

pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

pub async fn deposit(client: &mut TradingServiceClient<Channel>, token: &str, amount: i64) {
    client
        .deposit(authed(
            token,
            DepositRequest {
                idempotency_key: unique_name("dep-"),
                amount_minor: amount,
            },
        ))
        .await
        .unwrap();
}

pub async fn buy(
    client: &mut TradingServiceClient<Channel>,
    token: &str,
    key: &str,
    quantity: i64,
) -> Result<Order, Status> {
    client
        .place_order(authed(
            token,
            PlaceOrderRequest {
                idempotency_key: key.to_owned(),
                instrument: "BOLT".to_owned(),
                side: Side::Buy.into(),
                quantity,
            },
        ))
        .await
        .map(|response| response.into_inner().order.unwrap())
}
