//! The measurements, run one after another so they never compete for the machine's cores.
//!
//! Limits first (L1, L3), then the system (relay drain, consumer drain, latency). Each scenario
//! has its own JetStream namespace; the apply scenarios start from an empty inbox and ledger.
//!
//! # Layout
//! - [`publish`]: L1 (pipelined publishes, best of several windows) and L1s (sync acks).
//! - [`apply`]: L3, the consumer's transaction in plain SQL.
//! - [`relay`]: the relay draining a backlog.
//! - [`consume`]: the consumer draining a stream.
//! - [`latency`]: commit → consumer-commit at a fixed rate, open loop.
//! - [`auth`]: login throughput against the argon2id limit, a cheap RPC's p99 under login load.
//! - [`trading`]: `PlaceOrder` against its transaction; order → ledger latency.
//! - [`social`]: a trade fanned out to 10,000 followers against the raw insert.
//! - [`isolation`]: order and login latency with social running, then stopped.
//! - [`gateway`]: a cheap RPC through the gateway against direct; notification fan-out.
//!
//! The service scenarios run their servers and the services' background work through
//! [`Running`].

pub mod apply;
pub mod auth;
pub mod consume;
pub mod gateway;
pub mod isolation;
pub mod latency;
pub mod publish;
pub mod relay;
pub mod social;
pub mod trading;

use std::time::{Duration, Instant};

use crate::cli::{Params, Scenario};
use crate::env::BenchEnv;
use crate::results::{Results, Timeline};

pub async fn run_all(env: &BenchEnv, params: &Params) -> anyhow::Result<Results> {
    let l1 = publish::run(env, params).await?;
    let l3 = apply::run(env, params).await?;
    let relay = relay::run(env, params).await?;
    let consumer = consume::run(env, params).await?;
    // A latency at a fixed rate with an absolute bound: measured in steady state, not while
    // PostgreSQL still checkpoints and vacuums the drains' 100,000 rows.
    quiesce(env, params).await;
    let latency = latency::run(env, params).await?;
    quiesce(env, params).await;
    let auth = auth::run(env, params).await?;
    quiesce(env, params).await;
    let trading = trading::run(env, params).await?;
    quiesce(env, params).await;
    let social = social::run(env, params).await?;
    quiesce(env, params).await;
    let isolation = isolation::run(env, params).await?;
    quiesce(env, params).await;
    let gateway = gateway::run(env, params).await?;
    Ok(Results {
        l1,
        l3,
        relay,
        consumer,
        latency,
        auth,
        trading,
        social,
        isolation,
        gateway,
    })
}

/// Runs only the scenarios of `--only`, in the usual order; their figures are printed as
/// progress lines, and there is no report (a ratio needs both sides of one run).
pub async fn run_some(env: &BenchEnv, params: &Params) -> anyhow::Result<()> {
    let wanted = |scenario| params.only.contains(&scenario);
    if wanted(Scenario::L1) {
        publish::run(env, params).await?;
    }
    if wanted(Scenario::L3) {
        apply::run(env, params).await?;
    }
    if wanted(Scenario::Relay) {
        relay::run(env, params).await?;
    }
    if wanted(Scenario::Consumer) {
        consume::run(env, params).await?;
    }
    if wanted(Scenario::Auth) {
        quiesce(env, params).await;
        let run = auth::run(env, params).await?;
        progress(&format!(
            "auth: A1 {:.1} verifies/s, login {:.1}/s (ratio {:.2}; {:.1}/s beside GetJwks); GetJwks p50/p99 alone {:.2}/{:.2} ms, under login load {:.2}/{:.2} ms (factor {:.2})",
            run.verify_limit.per_second,
            run.login.per_second,
            run.login.per_second / run.verify_limit.per_second.max(f64::MIN_POSITIVE),
            run.login_with_cheap.per_second,
            run.cheap_unloaded.p50_ms,
            run.cheap_unloaded.p99_ms,
            run.cheap_loaded.p50_ms,
            run.cheap_loaded.p99_ms,
            run.cheap_loaded.p99_ms / run.cheap_unloaded.p99_ms.max(f64::MIN_POSITIVE),
        ));
        let rounds: Vec<String> = run
            .per_round
            .iter()
            .map(|(a1, login, alone, loaded)| {
                format!("{a1:.0}/{login:.0}/s {alone:.2}/{loaded:.2} ms")
            })
            .collect();
        progress(&format!(
            "auth: per round A1/login, GetJwks p99 alone/loaded: {}",
            rounds.join(", ")
        ));
        progress(&format!(
            "auth: machine stalls seen by the GetJwks pacer: alone [{}], under logins [{}]",
            run.cheap_stalls_alone, run.cheap_stalls_loaded,
        ));
        progress(&format!("auth: {}", run.hashing_threads));
    }
    if wanted(Scenario::Trading) {
        let run = trading::run(env, params).await?;
        progress(&format!(
            "trading: T1 {:.0} orders/s, PlaceOrder {:.0}/s (ratio {:.2}); commit → ledger at {:.0}/s p50 {:.2} p99 {:.2} ms",
            run.direct.per_second,
            run.grpc.per_second,
            run.grpc.per_second / run.direct.per_second.max(f64::MIN_POSITIVE),
            run.ledger_rate,
            run.commit_to_ledger.p50_ms,
            run.commit_to_ledger.p99_ms,
        ));
    }
    if wanted(Scenario::Social) {
        let run = social::run(env, params).await?;
        progress(&format!(
            "social: {} followers; raw insert {:.0} rows/s, fan-out {:.0} items/s (ratio {:.2})",
            run.followers, run.raw_insert.per_second, run.fan_out.per_second, run.ratio,
        ));
    }
    if wanted(Scenario::Isolation) {
        quiesce(env, params).await;
        // The figures are in the progress line the scenario prints.
        isolation::run(env, params).await?;
    }
    if wanted(Scenario::Gateway) {
        quiesce(env, params).await;
        let run = gateway::run(env, params).await?;
        let notify = &run.notifications;
        progress(&format!(
            "gateway: WhoAmI through the gateway {:.0}/s, direct {:.0}/s (ratio {:.2}); notifications to {} subscribers p50 {:.2} p99 {:.2} ms",
            run.rpc.through_gateway.per_second,
            run.rpc.direct.per_second,
            run.rpc.ratio,
            notify.subscribers,
            notify.latency.p50_ms,
            notify.latency.p99_ms,
        ));
    }
    if wanted(Scenario::Latency) {
        quiesce(env, params).await;
        let run = latency::run(env, params).await?;
        let events = run.events + latency::WARMUP;
        progress(&format!(
            "latency: intended → producer commit p50 {:.2} p99 {:.2} ms; producer commit → consumer commit p50 {:.2} p99 {:.2} ms (→ handler p50 {:.2} p99 {:.2}; handler → commit p50 {:.2} p99 {:.2}); {:.2} events per relay batch ({} empty claims), {:.2} per consumer transaction",
            run.producer_commit.p50_ms,
            run.producer_commit.p99_ms,
            run.commit_to_consumer.p50_ms,
            run.commit_to_consumer.p99_ms,
            run.commit_to_handler.p50_ms,
            run.commit_to_handler.p99_ms,
            run.handler_to_commit.p50_ms,
            run.handler_to_commit.p99_ms,
            events as f64 / run.relay_batches.max(1) as f64,
            run.relay_claims - run.relay_batches,
            consume::per_transaction(events, run.consumer_transactions),
        ));
        std::fs::create_dir_all(&params.out)?;
        let path = params.out.join("latency.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&run)?)?;
        progress(&format!("wrote {}", path.display()));
    }
    Ok(())
}

pub fn progress(message: &str) {
    eprintln!("wharf-bench: {message}");
}

/// Waits until the machine is quiet again — under 15 % of its CPU busy over half a second —
/// after a checkpoint, for at most a minute. The scenarios before have left PostgreSQL with
/// checkpoints and autovacuum to do; a limit and the system it is compared with must not meet
/// different leftovers. Says how long it waited. A `--quick` run (the smoke test, next to
/// other tests) does not wait.
pub async fn quiesce(env: &BenchEnv, params: &Params) {
    if params.quick {
        return;
    }
    if let Ok(mut admin) = env.admin().await {
        // Superuser only; a bench on a shared server simply skips it.
        let _ = sqlx::query("CHECKPOINT").execute(&mut admin).await;
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let Some(before) = cpu_times() else { return };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(after) = cpu_times() else { return };
        let (busy, total) = (after.0 - before.0, after.1 - before.1);
        if total > 0 && busy * 100 < total * 15 {
            if start.elapsed() > Duration::from_secs(1) {
                progress(&format!(
                    "waited {:.1} s for the machine to be quiet",
                    start.elapsed().as_secs_f64()
                ));
            }
            return;
        }
    }
    progress("the machine stayed busy for a minute; measuring anyway");
}

/// `(busy, total)` jiffies of all CPUs, from `/proc/stat`.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle + iowait
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// How long `count` items may take at worst before a scenario gives up: a floor of
/// `min_rate` per second, plus a minute of slack.
pub fn deadline_for(count: u64, min_rate: u64) -> Duration {
    Duration::from_secs(60 + count / min_rate.max(1))
}

/// Polls `done()` (a count) until it reaches `target`, sampling it into a timeline, or fails
/// `within` after `start`. Returns the time from `start` to the poll that saw it done (polls
/// are 2 ms apart) and the timeline.
pub async fn wait_for_count(
    what: &str,
    start: Instant,
    target: u64,
    within: Duration,
    done: impl Fn() -> u64,
) -> anyhow::Result<(Duration, Timeline)> {
    let mut timeline = vec![(start.elapsed().as_secs_f64(), done())];
    let mut last_sample = start;
    loop {
        let count = done();
        let elapsed = start.elapsed();
        if count >= target {
            timeline.push((elapsed.as_secs_f64(), count));
            return Ok((elapsed, timeline));
        }
        if elapsed >= within {
            anyhow::bail!("timed out after {within:?} waiting for {what}: {count} of {target}");
        }
        if last_sample.elapsed() >= Duration::from_millis(250) {
            timeline.push((elapsed.as_secs_f64(), count));
            last_sample = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The servers and service background work a scenario runs in process, stopped together.
#[derive(Debug, Default)]
pub struct Running {
    stop: tokio_util::sync::CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Serves `server` until [`Running::stop`].
    pub fn serve(&mut self, server: wharf_runtime::GrpcServer) {
        let stop = self.stop.clone();
        self.tasks.push(tokio::spawn(async move {
            let _ = server.run_until_stopped(stop.cancelled_owned()).await;
        }));
    }

    /// Runs a service's background work (`App::run_until_stopped`) until [`Running::stop`];
    /// a failure is logged under `name`.
    pub fn spawn<F, E>(
        &mut self,
        name: &'static str,
        work: impl FnOnce(tokio_util::sync::CancellationToken) -> F,
    ) where
        F: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let work = work(self.stop.clone());
        self.tasks.push(tokio::spawn(async move {
            if let Err(err) = work.await {
                tracing::error!(error = %err, "{name} background work failed");
            }
        }));
    }

    /// Stops everything and waits for in-flight work to finish.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Deletes every Redis key under `config`'s prefix (the run's sessions and rate-limit
/// buckets); a failure is reported, never fatal.
pub async fn delete_redis_keys(config: &wharf_runtime::config::RedisConfig) {
    let deleted = async {
        let mut redis = config.connect_lazy()?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", config.key_prefix))
            .query_async(&mut redis)
            .await?;
        for chunk in keys.chunks(1000) {
            let _: i64 = redis::cmd("DEL").arg(chunk).query_async(&mut redis).await?;
        }
        Ok::<(), redis::RedisError>(())
    };
    if let Err(err) = deleted.await {
        progress(&format!(
            "could not delete Redis keys {}*: {err}",
            config.key_prefix
        ));
    }
}

/// A gRPC channel to a service this run started on `addr` (loopback, plain HTTP/2).
pub async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<tonic::transport::Channel> {
    use anyhow::Context as _;
    tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .with_context(|| format!("failed to connect to {addr}"))
}

/// `message` with `authorization: Bearer <token>`.
pub fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// A market buy of one BOLT under idempotency key `key`.
pub fn place_request(key: &str) -> wharf_proto::wharf::trading::v1::PlaceOrderRequest {
    wharf_proto::wharf::trading::v1::PlaceOrderRequest {
        idempotency_key: key.to_owned(),
        instrument: "BOLT".to_owned(),
        side: wharf_proto::wharf::trading::v1::Side::Buy.into(),
        quantity: 1,
    }
}

/// Where a benchmark's auth service hashes, as the README's deployment notes advise: at the
/// default priority, in an idle cgroup of the run's own where the machine lets the bench make
/// one (root, cgroup-v1 `cpu` hierarchy); without one, in the process's group. The report
/// says which, and why.
///
/// The smoke run (`--quick`) shares the machine with CI's compiles and tests, where
/// low-priority hashing gets a sliver of the CPU and few logins would finish. It checks that
/// logins work, not how fast: it hashes at normal priority, in the process's group.
pub struct Hashing {
    pub placement: wharf_auth::password::HashPlacement,
    /// The run's idle cgroup (kept until the service is gone), or why there is none.
    cgroup: Result<wharf_auth::cgroup::IdleCgroup, String>,
}

impl Hashing {
    pub fn for_run(env: &BenchEnv, name: &str, quick: bool) -> Self {
        use wharf_auth::password::{HashPlacement, HashPriority};
        if quick {
            return Self {
                placement: HashPlacement {
                    priority: HashPriority::Normal,
                    cgroup: None,
                },
                cgroup: Err("a smoke run hashes at normal priority".to_owned()),
            };
        }
        let cgroup = wharf_auth::cgroup::IdleCgroup::create(&format!("{}-{name}-hash", env.tag()))
            .map_err(|err| err.to_string());
        let placement = HashPlacement {
            priority: HashPriority::default(),
            cgroup: cgroup.as_ref().ok().map(|cgroup| cgroup.path().to_owned()),
        };
        Self { placement, cgroup }
    }

    /// Where the hashing threads are now, read back from the cgroup (call it while the
    /// service runs).
    pub fn describe(&self) -> String {
        match &self.cgroup {
            Ok(cgroup) => match cgroup.members() {
                Ok(members) if !members.is_empty() => format!(
                    "hashing threads in their own idle cgroup {} ({} threads)",
                    cgroup.path().display(),
                    members.len()
                ),
                Ok(_) => format!(
                    "hashing threads NOT in their idle cgroup {}: it is empty",
                    cgroup.path().display()
                ),
                Err(err) => format!(
                    "hashing threads in an idle cgroup {} that cannot be read: {err}",
                    cgroup.path().display()
                ),
            },
            Err(reason) => {
                format!("hashing threads in the process's group (no idle cgroup: {reason})")
            }
        }
    }
}

/// Auth limits out of reach: the scenarios measure throughput and latency, not refusals.
pub fn unlimited_auth_limits() -> wharf_auth::AuthLimits {
    let unlimited = wharf_resilience::Limit::new(1_000_000, Duration::from_secs(1));
    wharf_auth::AuthLimits {
        login_per_address: unlimited,
        login_failures_per_account_address: unlimited,
        login_failures_per_account: unlimited,
        register_per_address: unlimited,
        refresh_per_address: unlimited,
    }
}
