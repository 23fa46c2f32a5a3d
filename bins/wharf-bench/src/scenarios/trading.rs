//! Trading and revenue: `PlaceOrder` against its own transaction, and order → ledger latency.
//!
//! - T1, the limit: the order transaction (lock, checks, order, trade, cash, position, audit,
//!   outbox row) called directly — `TradingHandlers::place`, no gRPC, no token — by
//!   `concurrency` tasks, each for its own account.
//! - `PlaceOrder` over gRPC with a bearer token, same concurrency, same accounts' shape.
//!   Target ≥ 0.6 × T1.
//! - Order commit → ledger entry: orders over gRPC at half the measured `PlaceOrder` rate, open
//!   loop; for each, the time from its commit (the answer received) to the ledger
//!   transaction that recorded its fee (`recorded_at`, the revenue transaction's start).
//!   Target p99 ≤ 20 ms.
//!
//! Both services run in this process with their relays and consumers, as in `wharf dev`, so
//! the limit and the system share the background work of relaying and applying trades.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use serde::Serialize;
use tonic::transport::Channel;
use wharf_proto::wharf::trading::v1::trading_service_client::TradingServiceClient;
use wharf_proto::wharf::trading::v1::{DepositRequest, Side};
use wharf_runtime::GrpcServer;
use wharf_runtime::server::ServerConfig;
use wharf_tokens::{Identity, Tokens, TokensConfig};
use wharf_trading::service::OrderRequest;

use super::progress;
use super::{bearer, place_request};
use crate::cli::Params;
use crate::env::BenchEnv;
use crate::pace::{Schedule, StallSummary};
use crate::results::{Percentiles, Throughput, micros_histogram};
use crate::scenarios::Running;

#[derive(Debug, Clone, Serialize)]
pub struct TradingRun {
    pub concurrency: usize,
    /// T1: the order transaction called directly.
    pub direct: Throughput,
    /// `PlaceOrder` over gRPC.
    pub grpc: Throughput,
    /// Orders per second of the latency run (half the gRPC rate).
    pub ledger_rate: f64,
    pub ledger_orders: u64,
    /// Order commit → ledger entry.
    pub commit_to_ledger: Percentiles,
    /// The latency run's pacer waking late (see `pace`).
    pub ledger_stalls: StallSummary,
}

pub async fn run(env: &BenchEnv, params: &Params) -> anyhow::Result<TradingRun> {
    let window = if params.quick {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(8)
    };
    let concurrency = params.concurrency;
    let platform = Platform::start(env).await?;
    let users: Vec<Identity> = (0..concurrency)
        .map(|n| identity(&format!("bench-{n}")))
        .collect();
    for user in &users {
        platform.fund(user).await?;
    }

    progress("T1: the order transaction, called directly");
    let direct = {
        let handlers = platform.app_handlers.clone();
        let deadline = Instant::now() + window;
        let start = Instant::now();
        let tasks: Vec<_> = users
            .iter()
            .cloned()
            .enumerate()
            .map(|(n, user)| {
                let handlers = handlers.clone();
                tokio::spawn(async move {
                    let mut done = 0_u64;
                    while Instant::now() < deadline {
                        let key = format!("direct-{n}-{done}");
                        handlers
                            .place(&user, &order(&key))
                            .await
                            .map_err(|status| anyhow::anyhow!("direct order: {status}"))?;
                        done += 1;
                    }
                    Ok::<u64, anyhow::Error>(done)
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.context("a T1 task panicked")??;
        }
        Throughput::new(total, start.elapsed())
    };

    progress("PlaceOrder over gRPC");
    let grpc = {
        let deadline = Instant::now() + window;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (n, user) in users.iter().enumerate() {
            let mut client = platform.client().await?;
            let token = platform.token(user)?;
            tasks.push(tokio::spawn(async move {
                let mut done = 0_u64;
                while Instant::now() < deadline {
                    let key = format!("grpc-{n}-{done}");
                    client
                        .place_order(bearer(&token, place_request(&key)))
                        .await
                        .map_err(|status| anyhow::anyhow!("PlaceOrder: {status}"))?;
                    done += 1;
                }
                Ok::<u64, anyhow::Error>(done)
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await.context("a PlaceOrder task panicked")??;
        }
        Throughput::new(total, start.elapsed())
    };

    // Let the relay and revenue catch up before the latency run starts from a quiet state.
    platform.wait_for_ledger(Duration::from_secs(300)).await?;

    let ledger_rate = (grpc.per_second / 2.0).max(1.0);
    progress(&format!(
        "order commit → ledger entry at {ledger_rate:.0} orders/s (half the PlaceOrder rate)"
    ));
    let (commit_to_ledger, ledger_orders, ledger_stalls) =
        platform.ledger_latency(&users, ledger_rate, window).await?;
    progress(&format!(
        "order commit → ledger entry: p50 {:.2} p99 {:.2} max {:.2} ms over {ledger_orders} orders; machine stalls {ledger_stalls}",
        commit_to_ledger.p50_ms, commit_to_ledger.p99_ms, commit_to_ledger.max_ms
    ));
    platform.stop().await;
    Ok(TradingRun {
        concurrency,
        direct,
        grpc,
        ledger_rate,
        ledger_orders,
        commit_to_ledger,
        ledger_stalls,
    })
}

fn identity(user_id: &str) -> Identity {
    Identity {
        user_id: user_id.to_owned(),
        session_id: "bench".to_owned(),
        roles: Vec::new(),
        expires_at: u64::MAX,
        token_id: "bench".to_owned(),
    }
}

fn order(key: &str) -> OrderRequest<'_> {
    OrderRequest {
        key,
        instrument: "BOLT",
        side: Side::Buy,
        side_name: "BUY",
        quantity: 1,
    }
}

struct Platform {
    addr: SocketAddr,
    app_handlers: wharf_trading::service::TradingHandlers,
    tokens: Tokens,
    pool: sqlx::PgPool,
    running: Running,
}

impl Platform {
    async fn start(env: &BenchEnv) -> anyhow::Result<Self> {
        let database = env.database_config();
        for schema in wharf_trading::schemas()
            .into_iter()
            .chain(wharf_revenue::schemas())
        {
            wharf_runtime::db::migrate(&database, &schema)
                .await
                .context("failed to migrate trading and revenue")?;
        }
        let topology = env.topology("trading").await?;
        let mut tokens_config = TokensConfig::default();
        tokens_config.with_development_key();
        let tokens = tokens_config.tokens()?;
        let (trading, revenue) =
            start_trading_and_revenue(env, &database, &topology.namespace, &tokens_config).await?;
        let mut server = GrpcServer::bind(&ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_concurrent_requests: 4096,
            ..ServerConfig::default()
        })
        .await?;
        server.add_service(trading.server());
        let addr = server.local_addr();
        let app_handlers = trading.handlers().clone();
        let pool = trading.pool().clone();
        let mut running = Running::default();
        running.serve(server);
        running.spawn("trading", move |stop| trading.run_until_stopped(stop));
        running.spawn("revenue", move |stop| revenue.run_until_stopped(stop));
        Ok(Self {
            addr,
            app_handlers,
            tokens,
            pool,
            running,
        })
    }

    async fn client(&self) -> anyhow::Result<TradingServiceClient<Channel>> {
        Ok(TradingServiceClient::new(super::connect(self.addr).await?))
    }

    fn token(&self, user: &Identity) -> anyhow::Result<String> {
        Ok(self.tokens.issue(&user.user_id, "bench", &[])?.0)
    }

    /// Enough cash for every order of the run. Untimed.
    async fn fund(&self, user: &Identity) -> anyhow::Result<()> {
        self.client()
            .await?
            .deposit(bearer(
                &self.token(user)?,
                DepositRequest {
                    idempotency_key: "fund".to_owned(),
                    amount_minor: 1_000_000_000_000,
                },
            ))
            .await
            .context("failed to fund a bench account")?;
        Ok(())
    }

    /// Waits until every trade has its ledger entry.
    async fn wait_for_ledger(&self, within: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let missing: i64 = sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM trading.trades) - (SELECT count(*) FROM revenue.ledger_entries)",
            )
            .fetch_one(&self.pool)
            .await?;
            if missing <= 0 {
                return Ok(());
            }
            anyhow::ensure!(
                start.elapsed() < within,
                "{missing} trades still without a ledger entry after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Orders at `rate` for `window`, open loop; each order's commit → its ledger entry, and
    /// the machine stalls the pacer saw.
    async fn ledger_latency(
        &self,
        users: &[Identity],
        rate: f64,
        window: Duration,
    ) -> anyhow::Result<(Percentiles, u64, StallSummary)> {
        let client = self.client().await?;
        let tokens: Vec<String> = users
            .iter()
            .map(|user| self.token(user))
            .collect::<anyhow::Result<_>>()?;
        let tokens = Arc::new(tokens);
        let schedule = Schedule::from_now(
            Duration::from_secs_f64(1.0 / rate),
            (rate * window.as_secs_f64()).ceil() as u64,
        );
        let (mut ticks, stalls) = schedule.ticks()?;
        let mut pending = Vec::new();
        while let Some(index) = ticks.recv().await {
            let mut client = client.clone();
            let tokens = Arc::clone(&tokens);
            pending.push(tokio::spawn(async move {
                let who = usize::try_from(index).unwrap_or(0) % tokens.len();
                let key = format!("latency-{index}");
                let order = client
                    .place_order(bearer(&tokens[who], place_request(&key)))
                    .await
                    .map_err(|status| anyhow::anyhow!("PlaceOrder: {status}"))?
                    .into_inner()
                    .order
                    .context("an order")?;
                Ok::<(String, SystemTime), anyhow::Error>((order.order_id, SystemTime::now()))
            }));
        }
        let mut committed = Vec::with_capacity(pending.len());
        for order in pending {
            committed.push(order.await.context("an order task panicked")??);
        }
        let stalls = stalls.summary();
        self.wait_for_ledger(Duration::from_secs(300)).await?;
        let mut histogram = micros_histogram();
        for (order_id, at) in &committed {
            let recorded: sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc> =
                sqlx::query_scalar(
                    "SELECT recorded_at FROM revenue.ledger_entries WHERE order_id = $1::uuid",
                )
                .bind(order_id)
                .fetch_one(&self.pool)
                .await
                .context("the order's ledger entry")?;
            let recorded = SystemTime::from(recorded);
            let micros = recorded
                .duration_since(*at)
                .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
            histogram
                .record(micros.max(1))
                .context("histogram bounds")?;
        }
        Ok((
            Percentiles::from_micros(&histogram),
            committed.len() as u64,
            stalls,
        ))
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

/// Trading (without periodic reconciliation) and revenue, on the run's database and namespace.
pub async fn start_trading_and_revenue(
    env: &BenchEnv,
    database: &wharf_runtime::db::DatabaseConfig,
    namespace: &wharf_events::Namespace,
    tokens_config: &TokensConfig,
) -> anyhow::Result<(wharf_trading::App, wharf_revenue::App)> {
    let trading = wharf_trading::App::build(
        wharf_trading::Deps {
            database: database.clone(),
            nats: env.client.clone(),
            namespace: namespace.clone(),
            relay: wharf_outbox::RelayConfig::default(),
        },
        wharf_trading::TradingConfig {
            reconcile: wharf_trading::ReconcileConfig {
                interval: Duration::ZERO,
                ..Default::default()
            },
            ..Default::default()
        },
        tokens_config,
    )
    .await
    .context("failed to start trading")?;
    let revenue = wharf_revenue::App::build(
        wharf_revenue::Deps {
            database: database.clone(),
            nats: env.client.clone(),
            namespace: namespace.clone(),
            relay: wharf_outbox::RelayConfig::default(),
        },
        wharf_revenue::RevenueConfig::default(),
        tokens_config,
    )
    .await
    .context("failed to start revenue")?;
    Ok((trading, revenue))
}
