//! Isolation: with social stopped, orders and logins keep the latency they have with social
//! running (issue 6: social is best effort; nothing on the order or login path waits for it).
//!
//! Auth, trading, revenue and social run in this process on one namespace, as in `wharf dev`:
//! social's feed and achievement consumers read the trades that trading's relay publishes, and
//! every trader has followers, so each trade is real work for social (a feed item per
//! follower, the rules). `PlaceOrder` and `Login` are called over gRPC at fixed rates, open
//! loop, each call timed from its scheduled start, in two phases of the same length:
//!
//! 1. **social running**, applying every trade as it comes;
//! 2. **social stopped**: its consumers and service cancelled, while trades and logins keep
//!    being published (the trades wait in JetStream for its durable consumers).
//!
//! Then social starts again and must catch up: every trade of the run reaches every follower's
//! feed. The backlog it found proves it was stopped; the catch-up, that nothing was lost.
//!
//! Checks: p99 with social stopped ≤ [`BOUND`] × p99 with social running, and no more failed
//! calls (refused, timed out; counted apart from the latencies) than with social running, for
//! `PlaceOrder` and for `Login`. Stopping social removes work from the machine, so the figure it guards against
//! is a coupling (a call that waits on social, a publish that blocks behind its backlog), which
//! shows up as timeouts or multiples; 1.5 × leaves room for the noise of a p99 of a few hundred
//! calls on a shared two-core machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use wharf_auth::AuthConfig;
use wharf_events::Topology;
use wharf_proto::Event;
use wharf_proto::wharf::auth::v1::auth_service_client::AuthServiceClient;
use wharf_proto::wharf::auth::v1::{LoginRequest, RegisterRequest};
use wharf_proto::wharf::trading::v1::trading_service_client::TradingServiceClient;
use wharf_proto::wharf::trading::v1::{DepositRequest, TradeExecuted};
use wharf_runtime::GrpcServer;
use wharf_runtime::config::RedisConfig;
use wharf_runtime::db::DatabaseConfig;
use wharf_runtime::server::ServerConfig;
use wharf_tokens::{Tokens, TokensConfig};

use super::progress;
use super::{bearer, place_request};
use crate::cli::Params;
use crate::env::BenchEnv;
use crate::pace::{Schedule, StallSummary};
use crate::results::{Percentiles, Throughput, micros_histogram};
use crate::scenarios::Running;

/// p99 with social stopped may be at most this many times p99 with social running.
pub const BOUND: f64 = 1.5;
const PASSWORD: &str = "bench password, long enough";

/// The run's sizes.
struct Sizes {
    phase: Duration,
    warm_up: Duration,
    order_rate: u32,
    login_rate: u32,
    traders: usize,
    followers: usize,
    login_users: usize,
}

impl Sizes {
    fn of(params: &Params) -> Self {
        if params.quick {
            Self {
                phase: Duration::from_secs(3),
                warm_up: Duration::from_secs(1),
                order_rate: 50,
                login_rate: 5,
                traders: 4,
                followers: 20,
                login_users: 2,
            }
        } else {
            Self {
                phase: Duration::from_secs(15),
                warm_up: Duration::from_secs(2),
                order_rate: 100,
                login_rate: 10,
                traders: 8,
                followers: 100,
                login_users: 4,
            }
        }
    }
}

/// One operation in one phase: the latency of the calls that succeeded, and how many failed
/// (refused, timed out).
#[derive(Debug, Clone, Copy)]
struct Measured {
    latency: Percentiles,
    failed: u64,
    /// The machine stopping the phase's pacer (see `pace`).
    stalls: StallSummary,
}

/// One operation's latency in the two phases.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Compared {
    /// Calls per second, open loop.
    pub rate: u32,
    /// Successful calls only; failures are counted apart.
    pub social_running: Percentiles,
    pub social_stopped: Percentiles,
    pub failed_running: u64,
    pub failed_stopped: u64,
    /// Times this operation's pacer woke ≥ 2 ms late in each phase: a p99 of a few hundred
    /// calls moves with them, whatever social does.
    pub stalls_running: StallSummary,
    pub stalls_stopped: StallSummary,
    /// `social_stopped.p99_ms / social_running.p99_ms`; target ≤ [`BOUND`], and no more
    /// failures with social stopped than with it running.
    pub p99_ratio: f64,
}

impl Compared {
    fn new(rate: u32, running: Measured, stopped: Measured) -> Self {
        Self {
            rate,
            social_running: running.latency,
            social_stopped: stopped.latency,
            failed_running: running.failed,
            failed_stopped: stopped.failed,
            stalls_running: running.stalls,
            stalls_stopped: stopped.stalls,
            p99_ratio: stopped.latency.p99_ms / running.latency.p99_ms.max(f64::MIN_POSITIVE),
        }
    }

    /// The check: p99 within the bound, and no more failed calls than with social running.
    pub fn pass(&self) -> bool {
        self.p99_ratio <= BOUND && self.failed_stopped <= self.failed_running
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct IsolationRun {
    /// Seconds of each phase.
    pub phase_s: f64,
    pub traders: usize,
    /// Followers of each trader: feed items social writes per trade.
    pub followers: usize,
    /// `PlaceOrder` over gRPC, spread over the traders.
    pub place_order: Compared,
    /// `Login` over gRPC (argon2id verify, Redis, the ACKED `logged_in` publish).
    pub login: Compared,
    /// Trades social's feed consumer applied while running (warm-up and phase 1).
    pub applied_while_running: u64,
    /// Trades waiting for social's feed consumer when it started again.
    pub backlog_on_return: u64,
    /// Social catching up: trades fanned out from its return until every trade of the run was
    /// in the feeds.
    pub catch_up: Throughput,
    /// Feed items of the run's trades, checked: trades × followers.
    pub feed_items: u64,
    pub bound: f64,
}

pub async fn run(env: &BenchEnv, params: &Params) -> anyhow::Result<IsolationRun> {
    let sizes = Sizes::of(params);
    let platform = Platform::start(env, params.quick).await?;
    let result = measure(&platform, &sizes).await;
    platform.stop().await;
    let run = result?;
    for (call, compared) in [("PlaceOrder", &run.place_order), ("Login", &run.login)] {
        progress(&format!(
            "isolation: {call} @{}/s, social running → stopped: p50 {:.2} → {:.2} ms, p99 {:.2} → {:.2} ms ({:.2}×, bound ≤ {BOUND}×), failed {} → {}; machine stalls running [{}], stopped [{}]",
            compared.rate,
            compared.social_running.p50_ms,
            compared.social_stopped.p50_ms,
            compared.social_running.p99_ms,
            compared.social_stopped.p99_ms,
            compared.p99_ratio,
            compared.failed_running,
            compared.failed_stopped,
            compared.stalls_running,
            compared.stalls_stopped,
        ));
    }
    progress(&format!(
        "isolation: social caught up with {} waiting trades in {:.1} s; {} feed items, as many as trades × followers",
        run.backlog_on_return, run.catch_up.seconds, run.feed_items
    ));
    Ok(run)
}

async fn measure(platform: &Platform, sizes: &Sizes) -> anyhow::Result<IsolationRun> {
    progress(&format!(
        "isolation: {} traders with {} followers each, {} login users",
        sizes.traders, sizes.followers, sizes.login_users
    ));
    let traders = platform.traders(sizes.traders).await?;
    platform.follow(&traders, sizes.followers).await?;
    let emails = platform.login_users(sizes.login_users).await?;
    let load = Load {
        orders: Arc::new(platform.order_calls(&traders).await?),
        logins: Arc::new(platform.login_calls(emails).await?),
        order_rate: sizes.order_rate,
        login_rate: sizes.login_rate,
    };

    let social = platform.start_social().await?;
    progress("isolation: warm-up, social running");
    load.run("warm-up", sizes.warm_up).await?;
    progress(&format!(
        "isolation: phase 1, social running ({:.0} s)",
        sizes.phase.as_secs_f64()
    ));
    let (orders_running, logins_running) = load.run("running", sizes.phase).await?;
    let applied_while_running = social.feed.applied();
    anyhow::ensure!(
        applied_while_running > 0,
        "social applied no trade while it was running"
    );
    social.stop().await;

    progress(&format!(
        "isolation: phase 2, social stopped ({:.0} s)",
        sizes.phase.as_secs_f64()
    ));
    let (orders_stopped, logins_stopped) = load.run("stopped", sizes.phase).await?;

    // Every trade of the run is out of trading's outbox, so what social finds is all of it.
    platform.wait_relayed(Duration::from_secs(120)).await?;
    let backlog_on_return = platform.feed_backlog().await?;
    anyhow::ensure!(
        backlog_on_return > 0,
        "no trade was waiting for social: it was not stopped, or trading stopped publishing"
    );
    progress(&format!(
        "isolation: social returns to {backlog_on_return} waiting trades"
    ));
    let returned = Instant::now();
    let social = platform.start_social().await?;
    let trades = platform.trades().await?;
    let fanned_out = platform.wait_fanned_out(trades, sizes.followers).await;
    let caught_up = returned.elapsed();
    let applied_after_return = social.feed.applied();
    social.stop().await;
    let feed_items = fanned_out?;

    Ok(IsolationRun {
        phase_s: sizes.phase.as_secs_f64(),
        traders: sizes.traders,
        followers: sizes.followers,
        place_order: Compared::new(sizes.order_rate, orders_running, orders_stopped),
        login: Compared::new(sizes.login_rate, logins_running, logins_stopped),
        applied_while_running,
        backlog_on_return,
        catch_up: Throughput::new(applied_after_return, caught_up),
        feed_items,
        bound: BOUND,
    })
}

/// A prepared request: a client and the call's arguments.
type OrderCall = (TradingServiceClient<Channel>, String, String);
type LoginCall = (AuthServiceClient<Channel>, String);

/// Orders and logins at their rates, open loop, both at once.
struct Load {
    orders: Arc<Vec<OrderCall>>,
    logins: Arc<Vec<LoginCall>>,
    order_rate: u32,
    login_rate: u32,
}

impl Load {
    /// Runs both for `window`; each call's latency counts from its scheduled start, so a
    /// stalled server cannot hide its queue.
    async fn run(&self, phase: &str, window: Duration) -> anyhow::Result<(Measured, Measured)> {
        let orders = Arc::clone(&self.orders);
        let phase_key = format!("{phase}-{}", uuid::Uuid::now_v7().simple());
        let place = open_loop(self.order_rate, window, move |index| {
            let (mut client, user, token) = orders[index % orders.len()].clone();
            let key = format!("iso-{phase_key}-{index}");
            async move {
                client
                    .place_order(bearer(&token, place_request(&key)))
                    .await
                    .map(drop)
                    .map_err(|status| format!("PlaceOrder for {user}: {status}"))
            }
        });
        let logins = Arc::clone(&self.logins);
        let login = open_loop(self.login_rate, window, move |index| {
            let (mut client, email) = logins[index % logins.len()].clone();
            async move {
                client
                    .login(LoginRequest {
                        email: email.clone(),
                        password: PASSWORD.to_owned(),
                    })
                    .await
                    .map(drop)
                    .map_err(|status| format!("Login for {email}: {status}"))
            }
        });
        let (orders, logins) = tokio::join!(place, login);
        Ok((
            orders.context(phase.to_owned())?,
            logins.context(phase.to_owned())?,
        ))
    }
}

/// `rate` calls per second for `window`, each started at its slot whatever the others do. A
/// call that fails is counted (and the first failure printed); the phase fails only if none
/// succeeds.
async fn open_loop<F, Fut>(rate: u32, window: Duration, call: F) -> anyhow::Result<Measured>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let calls = (f64::from(rate) * window.as_secs_f64()).round().max(1.0) as u64;
    let schedule = Schedule::from_now(Duration::from_secs(1) / rate.max(1), calls);
    let (mut ticks, stalls) = schedule.ticks()?;
    let mut pending = Vec::with_capacity(usize::try_from(calls).unwrap_or(0));
    while let Some(index) = ticks.recv().await {
        let due = schedule.due(index);
        let call = call(usize::try_from(index).unwrap_or(usize::MAX));
        pending.push(tokio::spawn(
            async move { call.await.map(|()| due.elapsed()) },
        ));
    }
    let mut histogram = micros_histogram();
    let mut failed = 0;
    let mut first_failure = None;
    for call in pending {
        match call.await.context("a call panicked")? {
            Ok(elapsed) => {
                let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                histogram
                    .record(micros.max(1))
                    .context("histogram bounds")?;
            }
            Err(failure) => {
                failed += 1;
                first_failure.get_or_insert(failure);
            }
        }
    }
    if let Some(failure) = first_failure {
        progress(&format!(
            "isolation: {failed} of {calls} calls failed, the first: {failure}"
        ));
    }
    anyhow::ensure!(failed < calls, "every call failed");
    Ok(Measured {
        latency: Percentiles::from_micros(&histogram),
        failed,
        stalls: stalls.summary(),
    })
}

/// Auth, trading and revenue serving over one gRPC server for the whole run; social started
/// and stopped by the phases.
struct Platform {
    addr: SocketAddr,
    database: DatabaseConfig,
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    topology: Topology,
    tokens_config: TokensConfig,
    tokens: Tokens,
    pool: sqlx::PgPool,
    redis: RedisConfig,
    running: Running,
    /// Where auth hashes (see [`super::Hashing`]); its cgroup is removed with the platform.
    _hashing: super::Hashing,
}

/// A running social service.
struct Social {
    feed: Arc<wharf_events::consumer::ConsumerStats>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Social {
    async fn stop(self) {
        self.stop.cancel();
        if tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .is_err()
        {
            eprintln!("wharf-bench: the social service did not stop within 60 s");
        }
    }
}

impl Platform {
    async fn start(env: &BenchEnv, quick: bool) -> anyhow::Result<Self> {
        let database = env.database_config();
        for schema in wharf_auth::schemas()
            .into_iter()
            .chain(wharf_trading::schemas())
            .chain(wharf_revenue::schemas())
            .chain(wharf_social::schemas())
        {
            wharf_runtime::db::migrate(&database, &schema)
                .await
                .context("failed to migrate the services' schemas")?;
        }
        let topology = env.topology("isolation").await?;
        let mut tokens_config = TokensConfig::default();
        tokens_config.with_development_key();
        let tokens = tokens_config.tokens()?;
        let redis = RedisConfig {
            url: std::env::var("REDIS_URL").unwrap_or_else(|_| RedisConfig::default().url),
            key_prefix: format!("{}-iso:", env.tag()),
            ..RedisConfig::default()
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let hashing = super::Hashing::for_run(env, "isolation", quick);
        let auth = wharf_auth::App::build(
            wharf_auth::Deps {
                database: database.clone(),
                nats: env.client.clone(),
                redis: redis.clone(),
                namespace: topology.namespace.clone(),
                relay: wharf_outbox::RelayConfig::default(),
            },
            AuthConfig {
                password_workers: cores,
                // Room for every login of a phase: a machine busy elsewhere starves the
                // low-priority hashing threads, and this run measures latency, not refusals.
                password_queue: 1024,
                // Registrations stay in auth's outbox: this run's users are made ACTIVE below.
                relay: false,
                limits: super::unlimited_auth_limits(),
                password_priority: hashing.placement.priority,
                password_cgroup: hashing.placement.cgroup.clone(),
                ..AuthConfig::default()
            },
            &tokens_config,
        )
        .await
        .context("failed to start auth")?;
        let (trading, revenue) = super::trading::start_trading_and_revenue(
            env,
            &database,
            &topology.namespace,
            &tokens_config,
        )
        .await?;

        let mut server = GrpcServer::bind(&ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_concurrent_requests: 4096,
            ..ServerConfig::default()
        })
        .await?;
        server.add_service(auth.server());
        server.add_service(trading.server());
        let addr = server.local_addr();
        let pool = trading.pool().clone();
        let mut running = Running::default();
        running.serve(server);
        running.spawn("auth", move |stop| auth.run_until_stopped(stop));
        running.spawn("trading", move |stop| trading.run_until_stopped(stop));
        running.spawn("revenue", move |stop| revenue.run_until_stopped(stop));
        Ok(Self {
            addr,
            database,
            nats: env.client.clone(),
            js: env.js.clone(),
            topology,
            tokens_config,
            tokens,
            pool,
            redis,
            running,
            _hashing: hashing,
        })
    }

    /// Social with all its consumers, as in `wharf dev` (its relay off: nothing here answers
    /// registrations).
    async fn start_social(&self) -> anyhow::Result<Social> {
        let app = wharf_social::App::build(
            wharf_social::Deps {
                database: self.database.clone(),
                nats: self.nats.clone(),
                namespace: self.topology.namespace.clone(),
                relay: wharf_outbox::RelayConfig::default(),
            },
            wharf_social::SocialConfig {
                relay: false,
                ..wharf_social::SocialConfig::default()
            },
            &self.tokens_config,
        )
        .await
        .context("failed to start social")?;
        let feed = app.feed_stats();
        let stop = CancellationToken::new();
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                if let Err(err) = app.run_until_stopped(stop).await {
                    tracing::error!(error = %err, "social background work failed");
                }
            })
        };
        Ok(Social { feed, stop, task })
    }

    async fn channel(&self) -> anyhow::Result<Channel> {
        super::connect(self.addr).await
    }

    /// `count` funded trading users with social profiles. Untimed.
    async fn traders(&self, count: usize) -> anyhow::Result<Vec<String>> {
        let mut client = TradingServiceClient::new(self.channel().await?);
        let mut traders = Vec::with_capacity(count);
        for n in 0..count {
            let user = format!("iso-trader-{n}");
            let token = self.tokens.issue(&user, "bench", &[])?.0;
            client
                .deposit(bearer(
                    &token,
                    DepositRequest {
                        idempotency_key: "fund".to_owned(),
                        amount_minor: 1_000_000_000_000,
                    },
                ))
                .await
                .context("failed to fund a trader")?;
            traders.push(user);
        }
        Ok(traders)
    }

    /// Profiles for the traders and `followers` fans, each fan following every trader, in
    /// social's schema. Untimed.
    async fn follow(&self, traders: &[String], followers: usize) -> anyhow::Result<()> {
        let count = i64::try_from(followers).context("too many followers")?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO social.profiles (user_id, handle, display_name, registration_event_id) \
             SELECT t.user_id, replace(t.user_id, '-', '_'), t.user_id, gen_random_uuid() \
             FROM unnest($1::text[]) AS t (user_id) \
             UNION ALL \
             SELECT 'iso-fan-' || n, 'iso_fan_' || n, 'Fan ' || n, gen_random_uuid() \
             FROM generate_series(1, $2::bigint) AS n",
        )
        .bind(traders)
        .bind(count)
        .execute(&mut *tx)
        .await
        .context("failed to seed the profiles")?;
        sqlx::query(
            "INSERT INTO social.follows (followee_id, follower_id) \
             SELECT t.user_id, 'iso-fan-' || n \
             FROM unnest($1::text[]) AS t (user_id), generate_series(1, $2::bigint) AS n",
        )
        .bind(traders)
        .bind(count)
        .execute(&mut *tx)
        .await
        .context("failed to seed the follows")?;
        tx.commit().await?;
        sqlx::query("ANALYZE social.profiles, social.follows")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// `count` ACTIVE auth users (registered through the RPC; social's saga reply is stood in
    /// for by an UPDATE). Untimed.
    async fn login_users(&self, count: usize) -> anyhow::Result<Vec<String>> {
        let mut client = AuthServiceClient::new(self.channel().await?);
        let mut emails = Vec::with_capacity(count);
        for n in 0..count {
            let email = format!("iso{n}@example.com");
            client
                .register(RegisterRequest {
                    email: email.clone(),
                    password: PASSWORD.to_owned(),
                    handle: format!("iso_{n}"),
                    ..RegisterRequest::default()
                })
                .await
                .context("failed to register a login user")?;
            emails.push(email);
        }
        sqlx::query("UPDATE auth.users SET status = 'ACTIVE' WHERE email = ANY($1)")
            .bind(&emails)
            .execute(&self.pool)
            .await
            .context("failed to activate the login users")?;
        Ok(emails)
    }

    /// A connection and a token per trader.
    async fn order_calls(&self, traders: &[String]) -> anyhow::Result<Vec<OrderCall>> {
        let mut calls = Vec::with_capacity(traders.len());
        for user in traders {
            let client = TradingServiceClient::new(self.channel().await?);
            let token = self.tokens.issue(user, "bench", &[])?.0;
            calls.push((client, user.clone(), token));
        }
        Ok(calls)
    }

    /// A connection per login user.
    async fn login_calls(&self, emails: Vec<String>) -> anyhow::Result<Vec<LoginCall>> {
        let mut calls = Vec::with_capacity(emails.len());
        for email in emails {
            calls.push((AuthServiceClient::new(self.channel().await?), email));
        }
        Ok(calls)
    }

    /// Waits until trading's relay has published every trade (its outbox is empty).
    async fn wait_relayed(&self, within: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM trading.outbox")
                .fetch_one(&self.pool)
                .await?;
            if left == 0 {
                return Ok(());
            }
            anyhow::ensure!(
                start.elapsed() < within,
                "{left} rows still in trading's outbox after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Trades stored for social's feed consumer and not yet delivered to it.
    async fn feed_backlog(&self) -> anyhow::Result<u64> {
        let stream = self
            .js
            .get_stream(self.topology.stream_name(TradeExecuted::STREAM))
            .await
            .context("the trading stream")?;
        let durable = self.topology.namespace.durable(wharf_social::FEED_CONSUMER);
        let info = stream
            .consumer_info(&durable)
            .await
            .context("the feed consumer's state")?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }

    /// The trades the run's traders made.
    async fn trades(&self) -> anyhow::Result<u64> {
        let trades: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM trading.trades t JOIN trading.accounts a ON a.id = t.account_id \
             WHERE a.user_id LIKE 'iso-trader-%'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(trades).unwrap_or(0))
    }

    /// Waits until each of `trades` is in every follower's feed; returns the feed items.
    async fn wait_fanned_out(&self, trades: u64, followers: usize) -> anyhow::Result<u64> {
        let within = super::deadline_for(trades, 20);
        let start = Instant::now();
        loop {
            let fanned_out: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM social.feed_trades WHERE actor_user_id LIKE 'iso-trader-%'",
            )
            .fetch_one(&self.pool)
            .await?;
            if u64::try_from(fanned_out).unwrap_or(0) >= trades {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < within,
                "social fanned out {fanned_out} of {trades} trades within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let items: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM social.feed_items WHERE actor_user_id LIKE 'iso-trader-%'",
        )
        .fetch_one(&self.pool)
        .await?;
        let items = u64::try_from(items).unwrap_or(0);
        let expected = trades * followers as u64;
        anyhow::ensure!(
            items == expected,
            "the feeds hold {items} items of the run's trades, not {trades} × {followers}"
        );
        Ok(items)
    }

    /// Stops every service and deletes the sessions and limits the run wrote to Redis.
    async fn stop(self) {
        self.running.stop().await;
        super::delete_redis_keys(&self.redis).await;
    }
}
