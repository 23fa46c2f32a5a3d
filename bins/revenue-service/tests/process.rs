//! `revenue-service` as a process of its own, configured only with `--set` overrides (as the
//! chaos test runs it): it serves on port 0 and says where, it is killed with SIGKILL while
//! applying trades and restarted, and still every trade has one ledger entry and one
//! `revenue.fee.recorded`; SIGTERM stops it cleanly; without token keys it refuses to start.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use async_nats::jetstream;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tonic::Request;
use tonic::transport::Channel;
use uuid::Uuid;
use wharf_events::Namespace;
use wharf_proto::Event;
use wharf_proto::wharf::revenue::v1::revenue_service_client::RevenueServiceClient;
use wharf_proto::wharf::revenue::v1::{FeeRecorded, GetRevenueRequest};
use wharf_proto::wharf::trading::v1::TradeExecuted;
use wharf_testkit::{FreshDatabase, TestNats, wait_until};
use wharf_tokens::{KeySet, TokenConfig, Tokens};

const KID: &str = "chaos-key";
const WITHIN: Duration = Duration::from_secs(30);

/// The service's process, its stdout lines on a channel (read continuously, so the pipe
/// never fills), killed on drop.
struct Service {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Service {
    fn spawn(args: &[String]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_revenue-service"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn revenue-service");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    async fn line_containing(&mut self, needle: &str) -> String {
        let found = tokio::time::timeout(WITHIN, async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(needle) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            other => panic!("no stdout line containing {needle:?} ({other:?})"),
        }
    }

    /// The address of a `revenue-service listening on ADDR` line.
    async fn address(&mut self) -> SocketAddr {
        let line = self.line_containing("listening on ").await;
        line.rsplit(' ')
            .next()
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }
}

/// A database migrated for revenue, a NATS of its own, and the settings that point the
/// service at them, with the issuer's public key only.
struct World {
    nats: TestNats,
    db: FreshDatabase,
    issuer: Tokens,
    settings: Vec<String>,
}

impl World {
    async fn new() -> Self {
        let nats = TestNats::start().await.expect("nats");
        let db = FreshDatabase::create().await.expect("database");
        for schema in wharf_revenue::schemas() {
            wharf_runtime::db::migrate(&db.config, &schema)
                .await
                .expect("migrations");
        }
        let keys = KeySet::generate(KID);
        let public = URL_SAFE_NO_PAD.encode(keys.public_key(KID).expect("the generated key"));
        let issuer = Tokens::new(keys, TokenConfig::default());
        let settings = vec![
            format!("database.url={}", db.config.url),
            format!("nats.url={}", nats.url()),
            "events.namespace=chaos".to_owned(),
            "server.listen=127.0.0.1:0".to_owned(),
            "relay.poll_interval=200ms".to_owned(),
            // What the killed process held unacknowledged comes back after this.
            "revenue.consumer_ack_wait=3s".to_owned(),
            format!("tokens.keys=[{{kid={KID},public_key={public}}}]"),
        ];
        Self {
            nats,
            db,
            issuer,
            settings,
        }
    }

    /// The command line: every setting as a `--set`, except those starting with `without`.
    fn args(&self, without: Option<&str>) -> Vec<String> {
        self.settings
            .iter()
            .filter(|set| without.is_none_or(|prefix| !set.starts_with(prefix)))
            .flat_map(|set| ["--set".to_owned(), set.clone()])
            .collect()
    }

    async fn js(&self) -> jetstream::Context {
        jetstream::new(self.nats.client().await.unwrap())
    }

    async fn entries(&self, pool: &sqlx::PgPool) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM revenue.ledger_entries")
            .fetch_one(pool)
            .await
            .unwrap()
    }
}

fn trade(i: i64) -> TradeExecuted {
    TradeExecuted {
        event_id: Uuid::now_v7().to_string(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_795_262_400 + i,
            nanos: 0,
        }),
        // A handful of accounts: the fee events of one are published in order.
        account_id: Uuid::from_u128(u128::try_from(i % 7).unwrap() + 1).to_string(),
        order_id: Uuid::now_v7().to_string(),
        trade_id: Uuid::now_v7().to_string(),
        user_id: format!("user-{}", i % 7),
        instrument: "WHRF".to_owned(),
        fee_minor: i,
        currency: "USD".to_owned(),
        ..TradeExecuted::default()
    }
}

/// Every `revenue.fee.recorded` in the namespace's REVENUE stream.
async fn fee_events(js: &jetstream::Context) -> Vec<FeeRecorded> {
    let Ok(mut stream) = js
        .get_stream(Namespace::new("chaos").stream("REVENUE"))
        .await
    else {
        return Vec::new();
    };
    let state = stream.info().await.unwrap().state.clone();
    let mut events = Vec::new();
    if state.messages == 0 {
        return events;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            events.push(prost::Message::decode(message.payload.as_ref()).unwrap());
        }
    }
    events
}

/// Enough that the batching consumer cannot apply them all between the test seeing the first
/// twenty and its SIGKILL.
const TRADES: i64 = 3_000;

/// SIGKILL while trades are being applied, then a restart with the same settings: each of
/// the 3,000 trades ends with exactly one ledger entry and exactly one `revenue.fee.recorded`
/// (the inbox absorbs redeliveries, JetStream's duplicate window re-published fee events), and
/// the restarted service reports the full total over gRPC. SIGTERM then stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_sigkill_mid_stream_and_restarted_loses_and_duplicates_nothing() {
    let world = World::new().await;
    let pool = wharf_runtime::db::connect_lazy(&world.db.config, "revenue").unwrap();
    // A first run creates the streams and the durable consumer, and goes away; the trades then
    // wait as a backlog, so the next run is killed while it works through them.
    let mut service = Service::spawn(&world.args(None));
    service.address().await;
    service.child.kill().await.expect("SIGKILL");

    let js = world.js().await;
    let subject = Namespace::new("chaos").subject(TradeExecuted::SUBJECT);
    let trades: Vec<TradeExecuted> = (0..TRADES).map(trade).collect();
    for event in &trades {
        let (headers, payload) = wharf_events::envelope::encode(event, None);
        js.publish_with_headers(subject.clone(), headers, payload)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut service = Service::spawn(&world.args(None));
    service.address().await;
    wait_until(WITHIN, "the service to be applying trades", || async {
        world.entries(&pool).await >= 20
    })
    .await
    .unwrap();
    service.child.kill().await.expect("SIGKILL");
    let applied_before = world.entries(&pool).await;

    let mut service = Service::spawn(&world.args(None));
    let addr = service.address().await;
    wait_until(WITHIN, "every trade in the ledger", || async {
        world.entries(&pool).await >= TRADES
    })
    .await
    .unwrap();
    wait_until(WITHIN, "every fee event published", || async {
        fee_events(&js).await.len() >= TRADES as usize
    })
    .await
    .unwrap();
    assert_eq!(world.entries(&pool).await, TRADES, "no entry twice");
    let fees = fee_events(&js).await;
    assert_eq!(fees.len(), TRADES as usize, "no fee event twice");
    let trades_announced: std::collections::HashSet<_> =
        fees.iter().map(|fee| fee.trade_id.clone()).collect();
    assert_eq!(trades_announced.len(), TRADES as usize);
    assert!(applied_before < TRADES, "the kill landed mid-stream");

    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let token = world
        .issuer
        .issue("ops", "s-1", &["admin".to_owned()])
        .unwrap()
        .0;
    let mut request = Request::new(GetRevenueRequest::default());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let report = RevenueServiceClient::new(channel)
        .get_revenue(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.total_fee_minor, (0..TRADES).sum::<i64>());
    assert_eq!(
        report.buckets.iter().map(|b| b.trade_count).sum::<i64>(),
        TRADES
    );

    let pid = service.child.id().expect("running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    service.line_containing("stopped cleanly").await;
    let exit = tokio::time::timeout(WITHIN, service.child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// Without token keys the service refuses to start, and says what to configure.
#[tokio::test]
async fn without_token_keys_it_refuses_to_start() {
    let world = World::new().await;
    let output = tokio::time::timeout(
        WITHIN,
        Command::new(env!("CARGO_BIN_EXE_revenue-service"))
            .args(world.args(Some("tokens.keys=")))
            .output(),
    )
    .await
    .expect("exits")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no token keys are configured"), "{stderr}");
}
