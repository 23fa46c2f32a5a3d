//! The auth service under load, against this machine's argon2id limit (ARCHITECTURE §9).
//!
//! - A1, the limit: argon2id verifies per second with one plain thread per core and nothing
//!   else running, each verifying in its own reused [`Workspace`] as the service's hashing
//!   threads do, so the limit is the fastest verification this machine can do.
//! - Login throughput: the real service (gRPC, PostgreSQL lookup, the bounded password pool,
//!   the pending session in Redis, the ACKED `logged_in` publish, the promotion) driven by
//!   enough concurrent clients to keep every core hashing, with nothing else calling.
//!   Target ≥ 0.85 × A1.
//! - A cheap RPC (`GetJwks`, no I/O) at a fixed rate, open loop, latency from the intended send
//!   time: once alone, once while logins saturate the CPU (the same login load goes on from
//!   the throughput phase into this one). Target: loaded p99 ≤ 2 × unloaded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::PasswordHasher;
use serde::Serialize;
use tonic::transport::Channel;
use wharf_auth::password::Workspace;
use wharf_auth::{App, AuthConfig, Deps};
use wharf_proto::wharf::auth::v1::auth_service_client::AuthServiceClient;
use wharf_proto::wharf::auth::v1::{GetJwksRequest, LoginRequest, RegisterRequest};
use wharf_runtime::GrpcServer;
use wharf_runtime::config::RedisConfig;
use wharf_runtime::server::ServerConfig;
use wharf_tokens::TokensConfig;

use super::{connect, progress};
use crate::cli::Params;
use crate::env::BenchEnv;
use crate::pace::{Schedule, StallSummary};
use crate::results::{Percentiles, Throughput, micros_histogram};
use crate::scenarios::Running;

const PASSWORD: &str = "bench password, long enough";
/// Enough logins in flight that a hash is always waiting while others are in Redis or
/// awaiting their JetStream ack: the pool never idles for want of work.
const LOGIN_CLIENTS_PER_CORE: usize = 8;
/// HTTP/2 connections the login clients share, as behind the gateway, which forwards every
/// user's login to auth over a few multiplexed connections.
const LOGIN_CONNECTIONS: usize = 2;

#[derive(Debug, Clone, Serialize)]
pub struct AuthRun {
    pub cores: usize,
    /// Rounds of (A1, the cheap RPC alone, logins alone, logins with the cheap RPC alongside),
    /// each phase `round_s`: the shared machine's slow and fast moments land on every phase
    /// alike.
    pub rounds: u32,
    pub round_s: f64,
    /// A1: argon2id verifies per second, one thread per core, over every round.
    pub verify_limit: Throughput,
    /// Successful logins per second through the service, over every round's logins-alone
    /// phase.
    pub login: Throughput,
    /// Successful logins per second while the cheap RPC runs alongside (for the record: that
    /// phase measures the cheap RPC).
    pub login_with_cheap: Throughput,
    pub login_clients: usize,
    /// Logins refused while the pool was full (RESOURCE_EXHAUSTED); should be 0 here.
    pub login_refused: u64,
    /// Logins past their deadline: on a machine busy with other work, auth's low-priority
    /// hashing gets little CPU. They count against the throughput; the run goes on.
    pub login_timed_out: u64,
    pub login_latency: Percentiles,
    /// `GetJwks` calls per second in the two cheap-RPC phases.
    pub cheap_rate: u32,
    pub cheap_unloaded: Percentiles,
    pub cheap_loaded: Percentiles,
    /// The cheap caller's pacer waking ≥ 2 ms late, alone and under logins: the wake-up
    /// latency every normal thread on the machine saw (see `pace`).
    pub cheap_stalls_alone: StallSummary,
    pub cheap_stalls_loaded: StallSummary,
    /// Per round: (A1 verifies/s, logins/s alone, cheap p99 alone, cheap p99 under logins).
    pub per_round: Vec<(f64, f64, f64, f64)>,
    /// Where the hashing threads ran, read back at the end of the run (see
    /// [`super::Hashing`]).
    pub hashing_threads: String,
}

pub async fn run(env: &BenchEnv, params: &Params) -> anyhow::Result<AuthRun> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let (rounds, round) = if params.quick {
        (1, Duration::from_secs(1))
    } else {
        (8, Duration::from_secs(1))
    };
    // Logins ramp up (every client's first hash) before a round's measured phase starts.
    let warm = Duration::from_millis(500);

    let service = Service::start(env, cores, params.quick).await?;
    let login_clients = LOGIN_CLIENTS_PER_CORE * cores;
    let users = service.users(login_clients).await?;
    let cheap_rate = 200;
    progress(&format!(
        "auth: {rounds} rounds of A1 (argon2id verifies on every core), GetJwks at {cheap_rate}/s alone, then logins from {login_clients} clients alone and with GetJwks alongside; {:.1} s each",
        round.as_secs_f64()
    ));

    let (mut verifies, mut verify_time) = (0, Duration::ZERO);
    let (mut logins, mut login_time) = (0, Duration::ZERO);
    let (mut logins_with_cheap, mut with_cheap_time) = (0, Duration::ZERO);
    let (mut refused, mut timed_out) = (0, 0);
    let mut login_latency = micros_histogram();
    let (mut cheap_unloaded, mut cheap_loaded) = (micros_histogram(), micros_histogram());
    let (mut stalls_alone, mut stalls_loaded) = (Vec::new(), Vec::new());
    let mut per_round = Vec::new();
    for _ in 0..rounds {
        let limit = tokio::task::spawn_blocking(move || verify_limit(cores, round))
            .await
            .context("the A1 threads panicked")??;
        verifies += limit.count;
        verify_time += Duration::from_secs_f64(limit.seconds);

        let (alone, stalled) = service.cheap_calls(cheap_rate, round).await?;
        stalls_alone.push(stalled);

        let stop = Arc::new(AtomicBool::new(false));
        let load = service.login_load(users.clone(), Arc::clone(&stop));
        let measured = async {
            tokio::time::sleep(warm).await;
            let alone = service.count_logins(tokio::time::sleep(round)).await;
            let (cheap, with_cheap) = service
                .count_logins(service.cheap_calls(cheap_rate, round))
                .await;
            stop.store(true, Ordering::Relaxed);
            (alone.1, cheap, with_cheap)
        };
        let ((login, loaded, with_cheap), load) = tokio::join!(measured, load);
        let (latency, round_refused, round_timed_out) = load?;
        let (loaded, stalled) = loaded?;
        stalls_loaded.push(stalled);
        logins += login.count;
        login_time += Duration::from_secs_f64(login.seconds);
        logins_with_cheap += with_cheap.count;
        with_cheap_time += Duration::from_secs_f64(with_cheap.seconds);
        refused += round_refused;
        timed_out += round_timed_out;
        login_latency.add(&latency).context("histogram bounds")?;
        per_round.push((
            limit.per_second,
            login.per_second,
            p99_ms(&alone),
            p99_ms(&loaded),
        ));
        cheap_unloaded.add(&alone).context("histogram bounds")?;
        cheap_loaded.add(&loaded).context("histogram bounds")?;
    }
    let hashing_threads = service.hashing.describe();
    service.stop().await;

    Ok(AuthRun {
        cores,
        rounds,
        round_s: round.as_secs_f64(),
        verify_limit: Throughput::new(verifies, verify_time),
        login: Throughput::new(logins, login_time),
        login_with_cheap: Throughput::new(logins_with_cheap, with_cheap_time),
        login_clients,
        login_refused: refused,
        login_timed_out: timed_out,
        login_latency: Percentiles::from_micros(&login_latency),
        cheap_rate,
        cheap_unloaded: Percentiles::from_micros(&cheap_unloaded),
        cheap_loaded: Percentiles::from_micros(&cheap_loaded),
        cheap_stalls_alone: StallSummary::combined(&stalls_alone),
        cheap_stalls_loaded: StallSummary::combined(&stalls_loaded),
        per_round,
        hashing_threads,
    })
}

fn p99_ms(histogram: &hdrhistogram::Histogram<u64>) -> f64 {
    Percentiles::from_micros(histogram).p99_ms
}

/// Verifies per second with `cores` plain threads for `window`.
fn verify_limit(cores: usize, window: Duration) -> anyhow::Result<Throughput> {
    let hash = Argon2::default()
        .hash_password(PASSWORD.as_bytes())
        .map_err(|err| anyhow::anyhow!("argon2: {err}"))?
        .to_string();
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..cores {
            let done = Arc::clone(&done);
            let hash = hash.clone();
            std::thread::Builder::new()
                .name("bench-a1".to_owned())
                .spawn_scoped(scope, move || {
                    let mut workspace = Workspace::default();
                    while start.elapsed() < window {
                        let ok = workspace.verify(PASSWORD.as_bytes(), &hash);
                        assert!(ok, "the bench password verifies");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .context("failed to start an A1 thread")?;
        }
        anyhow::Ok(())
    })?;
    Ok(Throughput::new(
        done.load(Ordering::Relaxed),
        start.elapsed(),
    ))
}

struct Service {
    addr: SocketAddr,
    running: Running,
    logins: Arc<AtomicU64>,
    pool: sqlx::PgPool,
    redis: RedisConfig,
    /// Dropped after the service (its cgroup sends any hashing thread still in it home).
    hashing: super::Hashing,
}

impl Service {
    async fn start(env: &BenchEnv, cores: usize, quick: bool) -> anyhow::Result<Self> {
        let topology = env.topology("auth").await?;
        let redis = RedisConfig {
            url: std::env::var("REDIS_URL").unwrap_or_else(|_| RedisConfig::default().url),
            key_prefix: format!("{}:", env.tag()),
            ..RedisConfig::default()
        };
        let mut tokens = TokensConfig::default();
        tokens.with_development_key();
        let hashing = super::Hashing::for_run(env, "auth", quick);
        let config = AuthConfig {
            // Room for every client: this run measures throughput, not refusals.
            password_workers: cores,
            password_queue: LOGIN_CLIENTS_PER_CORE * cores,
            relay: false,
            limits: super::unlimited_auth_limits(),
            password_priority: hashing.placement.priority,
            password_cgroup: hashing.placement.cgroup.clone(),
            ..AuthConfig::default()
        };
        let AuthServed {
            addr,
            pool,
            running,
        } = serve_auth(
            env,
            env.client.clone(),
            &redis,
            &topology.namespace,
            config,
            &tokens,
        )
        .await?;
        Ok(Self {
            addr,
            running,
            logins: Arc::new(AtomicU64::new(0)),
            pool,
            redis,
            hashing,
        })
    }

    async fn client(&self) -> anyhow::Result<AuthServiceClient<Channel>> {
        Ok(AuthServiceClient::new(connect(self.addr).await?))
    }

    /// `count` ACTIVE users (registered through the RPC; the saga's reply is stood in for by
    /// an UPDATE, since no social service runs here). Untimed.
    async fn users(&self, count: usize) -> anyhow::Result<Vec<String>> {
        let mut client = self.client().await?;
        let mut emails = Vec::with_capacity(count);
        for index in 0..count {
            let email = format!("bench{index}@example.com");
            client
                .register(RegisterRequest {
                    email: email.clone(),
                    password: PASSWORD.to_owned(),
                    handle: format!("bench_{index}"),
                    ..RegisterRequest::default()
                })
                .await
                .context("failed to register a bench user")?;
            emails.push(email);
        }
        sqlx::query("UPDATE users SET status = 'ACTIVE' WHERE status = 'PENDING'")
            .execute(&self.pool)
            .await?;
        Ok(emails)
    }

    /// Runs `phase` and counts the logins that succeed meanwhile.
    async fn count_logins<T>(&self, phase: impl Future<Output = T>) -> (T, Throughput) {
        let started = Instant::now();
        let before = self.logins.load(Ordering::Relaxed);
        let output = phase.await;
        let done = self.logins.load(Ordering::Relaxed) - before;
        (output, Throughput::new(done, started.elapsed()))
    }

    /// One client per user, logging in back to back until `stop`.
    ///
    /// The clients run on a thread and runtime of their own, as clients in other processes
    /// would: the service's runtime does the service's work only.
    async fn login_load(
        &self,
        users: Vec<String>,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<(hdrhistogram::Histogram<u64>, u64, u64)> {
        let (addr, logins) = (self.addr, Arc::clone(&self.logins));
        on_own_thread("bench-logins", login_clients(addr, logins, users, stop)).await
    }

    /// `GetJwks` at `rate` per second for `window`, open loop: each call is due at its slot,
    /// and its latency counts from the slot, so a stalled server cannot hide its queue.
    ///
    /// The caller runs on a thread and runtime of its own, as a client in another process
    /// would: what it measures is the service under load, not a queue of load-generator
    /// tasks on the same executor.
    async fn cheap_calls(
        &self,
        rate: u32,
        window: Duration,
    ) -> anyhow::Result<(hdrhistogram::Histogram<u64>, StallSummary)> {
        let addr = self.addr;
        on_own_thread("bench-cheap", cheap_calls(addr, rate, window)).await
    }

    /// Stops the service and deletes the sessions and limits the run wrote to Redis.
    async fn stop(self) {
        self.running.stop().await;
        super::delete_redis_keys(&self.redis).await;
    }
}

/// One client per user on `addr`, logging in back to back until `stop`, counting successes
/// in `logins`.
async fn login_clients(
    addr: SocketAddr,
    logins: Arc<AtomicU64>,
    users: Vec<String>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(hdrhistogram::Histogram<u64>, u64, u64)> {
    let refused = Arc::new(AtomicU64::new(0));
    let timed_out = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    let mut connections = Vec::with_capacity(LOGIN_CONNECTIONS);
    for _ in 0..LOGIN_CONNECTIONS {
        connections.push(AuthServiceClient::new(connect(addr).await?));
    }
    for (index, email) in users.into_iter().enumerate() {
        let mut client = connections[index % LOGIN_CONNECTIONS].clone();
        let (stop, logins, refused, timed_out) = (
            Arc::clone(&stop),
            Arc::clone(&logins),
            Arc::clone(&refused),
            Arc::clone(&timed_out),
        );
        workers.push(tokio::spawn(async move {
            let mut histogram = micros_histogram();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let request = LoginRequest {
                    email: email.clone(),
                    password: PASSWORD.to_owned(),
                };
                match client.login(request).await {
                    Ok(_) => {
                        logins.fetch_add(1, Ordering::Relaxed);
                        let micros =
                            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        let _ = histogram.record(micros.max(1));
                    }
                    Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(status) if status.code() == tonic::Code::DeadlineExceeded => {
                        timed_out.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(status) => return Err(anyhow::anyhow!("login failed: {status}")),
                }
            }
            Ok(histogram)
        }));
    }
    let mut all = micros_histogram();
    for worker in workers {
        let histogram = worker.await.context("a login client panicked")??;
        all.add(&histogram).context("histogram bounds")?;
    }
    Ok((
        all,
        refused.load(Ordering::Relaxed),
        timed_out.load(Ordering::Relaxed),
    ))
}

async fn cheap_calls(
    addr: SocketAddr,
    rate: u32,
    window: Duration,
) -> anyhow::Result<(hdrhistogram::Histogram<u64>, StallSummary)> {
    let client = AuthServiceClient::new(connect(addr).await?);
    let schedule = Schedule::from_now(
        Duration::from_secs(1) / rate.max(1),
        u64::from(rate) * window.as_secs().max(1),
    );
    let (mut ticks, stalls) = schedule.ticks()?;
    let mut pending = Vec::new();
    while let Some(index) = ticks.recv().await {
        let due = schedule.due(index);
        let mut client = client.clone();
        pending.push(tokio::spawn(async move {
            client
                .get_jwks(GetJwksRequest {})
                .await
                .map(|_| due.elapsed())
        }));
    }
    let mut histogram = micros_histogram();
    for call in pending {
        let elapsed = call.await.context("a cheap call panicked")??;
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        histogram
            .record(micros.max(1))
            .context("histogram bounds")?;
    }
    Ok((histogram, stalls.summary()))
}

/// Runs `work` to completion on a new thread called `name`, on a single-threaded runtime of its
/// own.
async fn on_own_thread<T: Send + 'static>(
    name: &str,
    work: impl Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("failed to build a runtime")
                .and_then(|runtime| runtime.block_on(work));
            let _ = done.send(outcome);
        })
        .with_context(|| format!("failed to start {name}"))?;
    result.await.with_context(|| format!("{name} panicked"))?
}

/// The auth service in this process, on its own loopback port.
pub struct AuthServed {
    pub addr: SocketAddr,
    pub pool: sqlx::PgPool,
    pub running: Running,
}

/// Migrates the auth schema of the run's database and serves auth with `config`.
pub async fn serve_auth(
    env: &BenchEnv,
    nats: async_nats::Client,
    redis: &RedisConfig,
    namespace: &wharf_events::Namespace,
    config: AuthConfig,
    tokens: &TokensConfig,
) -> anyhow::Result<AuthServed> {
    let database = env.database_config();
    for schema in wharf_auth::schemas() {
        wharf_runtime::db::migrate(&database, &schema)
            .await
            .context("failed to migrate the auth schema")?;
    }
    let app = App::build(
        Deps {
            database,
            nats,
            redis: redis.clone(),
            namespace: namespace.clone(),
            relay: wharf_outbox::RelayConfig::default(),
        },
        config,
        tokens,
    )
    .await
    .context("failed to start the auth service")?;
    let pool = app.pool().clone();
    let mut server = GrpcServer::bind(&ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ServerConfig::default()
    })
    .await?;
    server.add_service(app.server());
    let addr = server.local_addr();
    let mut running = Running::default();
    running.serve(server);
    running.spawn("auth", move |stop| app.run_until_stopped(stop));
    Ok(AuthServed {
        addr,
        pool,
        running,
    })
}
