//! A cheap authenticated RPC through the gateway against the same RPC called directly.
//!
//! The RPC is `WhoAmI` on the real auth service: the service verifies the access token and
//! reads the session from Redis — the least any authenticated call does, with nothing of its
//! own on top (no PostgreSQL), so the gateway's share of the cost is as large as it gets. The
//! gateway in front adds its own hop: its edge check (a verified-token cache, the session
//! state cached for its default 2 s), the GCRA round trip to Redis on every call, and
//! forwarding over one HTTP/2 connection to the upstream.
//!
//! Both sides are driven by the same clients — [`CLIENTS`] closed-loop tasks over
//! [`CONNECTIONS`] connections, each with the access token of one of [`USERS`] users who
//! logged in for real. The machine is shared, so the two sides alternate in rounds and each
//! side's figure is the total over its rounds: a burst of background load lands on both.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::Channel;
use wharf_auth::AuthConfig;
use wharf_auth::password::HashPriority;
use wharf_gateway::Deps;
use wharf_proto::wharf::auth::v1::auth_service_client::AuthServiceClient;
use wharf_proto::wharf::auth::v1::{LoginRequest, RegisterRequest, WhoAmIRequest};
use wharf_tokens::TokensConfig;

use super::{Instance, progress};
use crate::cli::Params;
use crate::env::BenchEnv;
use crate::results::{Percentiles, Throughput, micros_histogram};
use crate::scenarios::Running;

/// Closed-loop callers: enough in flight that neither server ever waits for work.
const CLIENTS: usize = 64;
/// HTTP/2 connections the callers share.
const CONNECTIONS: usize = 8;
/// Users logged in; each caller uses one's access token.
const USERS: usize = 4;
const PASSWORD: &str = "bench password, long enough";
const METHOD: &str = "wharf.auth.v1.AuthService/WhoAmI";

#[derive(Debug, Clone, Serialize)]
pub struct RpcRun {
    pub method: &'static str,
    pub clients: usize,
    pub connections: usize,
    pub users: usize,
    /// Rounds of (direct, through the gateway), each side `round_s` per round.
    pub rounds: u32,
    pub round_s: f64,
    pub direct: Throughput,
    pub through_gateway: Throughput,
    /// `through_gateway / direct`; target ≥ [`super::RPC_RATIO_TARGET`].
    pub ratio: f64,
    /// Calls per second of each round, `(direct, through the gateway)`: how much the shared
    /// machine moved the figures while they were taken.
    pub per_round: Vec<(f64, f64)>,
    /// Per-call latency at saturation (closed loop: it is queueing, mostly).
    pub direct_latency: Percentiles,
    pub gateway_latency: Percentiles,
}

pub async fn run(env: &BenchEnv, params: &Params, deps: &Deps) -> anyhow::Result<RpcRun> {
    let (rounds, round, warm_up) = if params.quick {
        (1, Duration::from_secs(1), Duration::from_millis(300))
    } else {
        (4, Duration::from_secs(2), Duration::from_secs(1))
    };
    let mut tokens_config = TokensConfig::default();
    tokens_config.with_development_key();
    let upstream = AuthUpstream::start(env, deps, &tokens_config).await?;
    let outcome = async {
        let tokens = upstream.log_in(USERS).await?;
        let mut config = super::config();
        config
            .upstreams
            .insert("auth".to_owned(), vec![format!("http://{}", upstream.addr)]);
        let gateway = Instance::start(deps, config, &tokens_config).await?;
        let measured = compare(upstream.addr, gateway.addr, &tokens, rounds, round, warm_up).await;
        gateway.stop().await;
        measured
    }
    .await;
    upstream.stop().await;
    let Compared {
        direct,
        through_gateway,
        per_round,
        direct_latency,
        gateway_latency,
    } = outcome?;
    Ok(RpcRun {
        method: METHOD,
        clients: CLIENTS,
        connections: CONNECTIONS,
        users: USERS,
        rounds,
        round_s: round.as_secs_f64(),
        ratio: through_gateway.per_second / direct.per_second.max(f64::MIN_POSITIVE),
        direct,
        through_gateway,
        per_round,
        direct_latency,
        gateway_latency,
    })
}

struct Compared {
    direct: Throughput,
    through_gateway: Throughput,
    per_round: Vec<(f64, f64)>,
    direct_latency: Percentiles,
    gateway_latency: Percentiles,
}

/// Warms both sides up, then alternates them for `rounds`.
async fn compare(
    direct_addr: SocketAddr,
    gateway_addr: SocketAddr,
    tokens: &[String],
    rounds: u32,
    round: Duration,
    warm_up: Duration,
) -> anyhow::Result<Compared> {
    let direct = Callers::connect(direct_addr, tokens).await?;
    let gateway = Callers::connect(gateway_addr, tokens).await?;
    let (mine, theirs) = (direct.sanity().await?, gateway.sanity().await?);
    anyhow::ensure!(
        mine == theirs,
        "WhoAmI through the gateway answered {theirs:?}, directly {mine:?}"
    );
    progress(&format!(
        "gateway: {METHOD}, {CLIENTS} closed-loop clients on {CONNECTIONS} connections, direct and through the gateway in {rounds} alternating rounds of {:.1} s",
        round.as_secs_f64()
    ));
    direct.run(warm_up).await?;
    gateway.run(warm_up).await?;
    let (mut direct_calls, mut gateway_calls) = (0, 0);
    let (mut direct_time, mut gateway_time) = (Duration::ZERO, Duration::ZERO);
    let (mut direct_latency, mut gateway_latency) = (micros_histogram(), micros_histogram());
    let mut per_round = Vec::new();
    for _ in 0..rounds {
        let (calls, elapsed, histogram) = direct.run(round).await?;
        let direct_rate = Throughput::new(calls, elapsed).per_second;
        direct_calls += calls;
        direct_time += elapsed;
        direct_latency.add(&histogram).context("histogram bounds")?;
        let (calls, elapsed, histogram) = gateway.run(round).await?;
        per_round.push((direct_rate, Throughput::new(calls, elapsed).per_second));
        gateway_calls += calls;
        gateway_time += elapsed;
        gateway_latency
            .add(&histogram)
            .context("histogram bounds")?;
    }
    let direct = Throughput::new(direct_calls, direct_time);
    let through_gateway = Throughput::new(gateway_calls, gateway_time);
    let rounds: Vec<String> = per_round
        .iter()
        .map(|(direct, gateway)| format!("{direct:.0}/{gateway:.0}"))
        .collect();
    progress(&format!(
        "gateway: WhoAmI direct {:.0}/s, through the gateway {:.0}/s (ratio {:.2}); per round direct/gateway {}",
        direct.per_second,
        through_gateway.per_second,
        through_gateway.per_second / direct.per_second.max(f64::MIN_POSITIVE),
        rounds.join(", "),
    ));
    Ok(Compared {
        direct,
        through_gateway,
        per_round,
        direct_latency: Percentiles::from_micros(&direct_latency),
        gateway_latency: Percentiles::from_micros(&gateway_latency),
    })
}

/// The callers of one side: their connections and tokens, kept across rounds.
struct Callers {
    clients: Vec<(AuthServiceClient<Channel>, AsciiMetadataValue)>,
}

impl Callers {
    async fn connect(addr: SocketAddr, tokens: &[String]) -> anyhow::Result<Self> {
        let mut channels = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let channel = Channel::from_shared(format!("http://{addr}"))?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("failed to connect to {addr}"))?;
            channels.push(channel);
        }
        let clients = (0..CLIENTS)
            .map(|n| {
                let token = &tokens[n % tokens.len()];
                let value: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {token}"))
                    .context("a token is a valid header value")?;
                let client = AuthServiceClient::new(channels[n % CONNECTIONS].clone());
                Ok((client, value))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { clients })
    }

    /// Who the first caller is, as the server answers.
    async fn sanity(&self) -> anyhow::Result<(String, String)> {
        let (client, token) = &self.clients[0];
        let answer = who_am_i(&mut client.clone(), token).await?;
        Ok((answer.user_id, answer.session_id))
    }

    /// Every caller calls back to back for `window`: calls done, time taken, latencies.
    async fn run(
        &self,
        window: Duration,
    ) -> anyhow::Result<(u64, Duration, hdrhistogram::Histogram<u64>)> {
        let start = Instant::now();
        let deadline = start + window;
        let tasks: Vec<_> = self
            .clients
            .iter()
            .cloned()
            .map(|(mut client, token)| {
                tokio::spawn(async move {
                    let mut histogram = micros_histogram();
                    let mut done = 0_u64;
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        who_am_i(&mut client, &token).await?;
                        let micros =
                            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        histogram
                            .record(micros.max(1))
                            .context("histogram bounds")?;
                        done += 1;
                    }
                    anyhow::Ok((done, histogram))
                })
            })
            .collect();
        let mut total = 0;
        let mut all = micros_histogram();
        for task in tasks {
            let (done, histogram) = task.await.context("a WhoAmI caller panicked")??;
            total += done;
            all.add(&histogram).context("histogram bounds")?;
        }
        Ok((total, start.elapsed(), all))
    }
}

async fn who_am_i(
    client: &mut AuthServiceClient<Channel>,
    token: &AsciiMetadataValue,
) -> anyhow::Result<wharf_proto::wharf::auth::v1::WhoAmIResponse> {
    let mut request = tonic::Request::new(WhoAmIRequest {});
    request
        .metadata_mut()
        .insert("authorization", token.clone());
    let answer = client
        .who_am_i(request)
        .await
        .map_err(|status| anyhow::anyhow!("WhoAmI: {status}"))?;
    Ok(answer.into_inner())
}

/// The real auth service in this process, on its own loopback port.
struct AuthUpstream {
    addr: SocketAddr,
    pool: sqlx::PgPool,
    running: Running,
}

impl AuthUpstream {
    async fn start(env: &BenchEnv, deps: &Deps, tokens: &TokensConfig) -> anyhow::Result<Self> {
        let config = AuthConfig {
            relay: false,
            // Logins here are set-up, not measured: they must not starve behind other work.
            password_priority: HashPriority::Normal,
            limits: crate::scenarios::unlimited_auth_limits(),
            ..AuthConfig::default()
        };
        let served = crate::scenarios::auth::serve_auth(
            env,
            deps.nats.clone(),
            &deps.redis,
            &deps.namespace,
            config,
            tokens,
        )
        .await?;
        Ok(Self {
            addr: served.addr,
            pool: served.pool,
            running: served.running,
        })
    }

    /// Registers `count` users, activates them (no social service answers the saga here) and
    /// logs each in: their access tokens, with sessions auth itself wrote.
    async fn log_in(&self, count: usize) -> anyhow::Result<Vec<String>> {
        let mut client = AuthServiceClient::new(crate::scenarios::connect(self.addr).await?);
        let emails: Vec<String> = (0..count)
            .map(|n| format!("gateway{n}@example.com"))
            .collect();
        for (n, email) in emails.iter().enumerate() {
            client
                .register(RegisterRequest {
                    email: email.clone(),
                    password: PASSWORD.to_owned(),
                    handle: format!("gateway_{n}"),
                    ..RegisterRequest::default()
                })
                .await
                .context("failed to register a gateway bench user")?;
        }
        sqlx::query("UPDATE users SET status = 'ACTIVE' WHERE status = 'PENDING'")
            .execute(&self.pool)
            .await?;
        let mut tokens = Vec::with_capacity(count);
        for email in emails {
            let answer = client
                .login(LoginRequest {
                    email,
                    password: PASSWORD.to_owned(),
                })
                .await
                .context("failed to log a gateway bench user in")?
                .into_inner();
            let pair = answer.tokens.context("a login answers tokens")?;
            tokens.push(pair.access_token);
        }
        Ok(tokens)
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}
