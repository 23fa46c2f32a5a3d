//! Notification delivery with many subscribers across two gateway instances.
//!
//! Two gateways share NATS (the `NOTIFY` stream, read by each through its own ordered
//! consumer) and Redis. Every user has an active session, written as auth writes it, and an
//! access token; each opens one `Subscribe` stream, on instance A or B in turn, over HTTP/2
//! connections of [`Sizes::streams_per_connection`] streams each. Publishing starts only once
//! every stream is open (its response started, which the gateway sends after registering it)
//! and both hubs count every subscriber.
//!
//! Then notifications go out on core NATS (`notify.user.<id>`, as producers publish them) at a
//! fixed rate to random users, open loop: the `n`-th is due at `start + n / rate`, and that
//! intended time travels in its `occurred_at`. A notification's latency is its arrival at the
//! subscriber minus that time, so a publisher or gateway that falls behind shows as latency,
//! not as a lower rate. A warm-up second is sent first and not counted. Every notification
//! must arrive, exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use futures::StreamExt;
use prost::Message as _;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use wharf_gateway::Deps;
use wharf_proto::wharf::gateway::v1::notifications_client::NotificationsClient;
use wharf_proto::wharf::gateway::v1::{Notification, SubscribeRequest, SubscribeResponse};
use wharf_tokens::TokensConfig;
use wharf_tokens::session::{session_key, store_prefix};

use super::{Instance, progress};
use crate::cli::Params;
use crate::pace::{Schedule, StallSummary};
use crate::results::{Percentiles, Throughput, micros_histogram};
use crate::scenarios::{deadline_for, wait_for_count};

/// `kind` of the notifications sent before the measured ones.
const WARM_UP: &str = "bench-warm-up";
const MEASURED: &str = "bench";
/// `Subscribe` calls opening at once (the server sheds calls beyond its concurrency limit
/// until their responses start; real clients do not all arrive in the same millisecond).
const OPENING: usize = 256;

struct Sizes {
    subscribers: usize,
    streams_per_connection: usize,
    rate: u32,
    warm_up: Duration,
    measured: Duration,
}

impl Sizes {
    fn of(params: &Params) -> Self {
        if params.quick {
            Self {
                subscribers: 200,
                streams_per_connection: 50,
                rate: 200,
                warm_up: Duration::from_millis(500),
                measured: Duration::from_secs(1),
            }
        } else {
            Self {
                subscribers: 10_000,
                streams_per_connection: 100,
                rate: 1_000,
                warm_up: Duration::from_secs(1),
                measured: Duration::from_secs(5),
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FanOutRun {
    /// Subscribers asked for, and those both hubs counted before publishing began.
    pub subscribers_target: usize,
    pub subscribers: usize,
    /// Per gateway instance.
    pub per_instance: Vec<usize>,
    pub connections: usize,
    pub streams_per_connection: usize,
    /// Opening every stream (authentication, session, rate limit, registration).
    pub subscribe: Throughput,
    /// Notifications per second, open loop, for `duration_s` after the warm-up.
    pub rate: u32,
    pub duration_s: f64,
    pub warm_up: u64,
    pub published: u64,
    /// Measured notifications received; must equal `published`.
    pub delivered: u64,
    /// Intended send time → arrival at the subscriber.
    pub latency: Percentiles,
    /// The publisher's pacer waking late (see `pace`), over warm-up and measurement.
    pub stalls: StallSummary,
    /// Subscribers the hubs closed as too slow, and streams that ended in an error.
    pub slow_closed: u64,
    pub stream_errors: u64,
}

pub async fn run(
    env: &crate::env::BenchEnv,
    params: &Params,
    deps: &Deps,
) -> anyhow::Result<FanOutRun> {
    let sizes = Sizes::of(params);
    let mut tokens_config = TokensConfig::default();
    tokens_config.with_development_key();
    let instances = [
        Instance::start(deps, super::config(), &tokens_config).await?,
        Instance::start(deps, super::config(), &tokens_config).await?,
    ];
    let outcome = measure(env, deps, &sizes, &tokens_config, &instances).await;
    for instance in instances {
        instance.stop().await;
    }
    outcome
}

async fn measure(
    env: &crate::env::BenchEnv,
    deps: &Deps,
    sizes: &Sizes,
    tokens_config: &TokensConfig,
    instances: &[Instance; 2],
) -> anyhow::Result<FanOutRun> {
    progress(&format!(
        "gateway: {} users with sessions and tokens",
        sizes.subscribers
    ));
    let users: Vec<String> = (0..sizes.subscribers)
        .map(|n| format!("user-{n:05}"))
        .collect();
    seed_sessions(deps, &users).await?;
    let tokens = {
        let tokens = tokens_config.tokens()?;
        let users = users.clone();
        tokio::task::spawn_blocking(move || {
            users
                .iter()
                .map(|user| {
                    tokens
                        .issue(user, &session_of(user), &[])
                        .map(|(token, _)| token)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .context("issuing tokens panicked")??
    };

    // User n subscribes on instance n % 2, over that instance's connections in turn.
    let per_instance_users = sizes.subscribers.div_ceil(2);
    let connections_per_instance = per_instance_users.div_ceil(sizes.streams_per_connection);
    let mut channels = Vec::new();
    for instance in instances {
        for _ in 0..connections_per_instance {
            let channel = Channel::from_shared(format!("http://{}", instance.addr))?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("failed to connect to {}", instance.addr))?;
            channels.push(channel);
        }
    }
    let connection_of =
        |n: usize| (n % 2) * connections_per_instance + (n / 2) % connections_per_instance;

    progress(&format!(
        "gateway: opening {} Subscribe streams on 2 instances, {} connections, {} streams per connection",
        sizes.subscribers,
        channels.len(),
        sizes.streams_per_connection
    ));
    let opening = Instant::now();
    let opened: Vec<(usize, tonic::Streaming<SubscribeResponse>)> =
        futures::stream::iter(tokens.iter().enumerate())
            .map(|(n, token)| {
                let connection = connection_of(n);
                let mut client = NotificationsClient::new(channels[connection].clone());
                async move {
                    let request = crate::scenarios::bearer(token, SubscribeRequest::default());
                    let stream = client
                        .subscribe(request)
                        .await
                        .map_err(|status| anyhow::anyhow!("Subscribe: {status}"))?
                        .into_inner();
                    anyhow::Ok((connection, stream))
                }
            })
            .buffer_unordered(OPENING)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
    let subscribe = Throughput::new(opened.len() as u64, opening.elapsed());
    let counted = || {
        instances
            .iter()
            .map(|instance| instance.hub.subscribers() as u64)
            .sum::<u64>()
    };
    wait_for_count(
        "both hubs to count every subscriber",
        opening,
        sizes.subscribers as u64,
        deadline_for(sizes.subscribers as u64, 100),
        counted,
    )
    .await?;
    let per_instance: Vec<usize> = instances
        .iter()
        .map(|instance| instance.hub.subscribers())
        .collect();
    let subscribers = per_instance.iter().sum();
    progress(&format!(
        "gateway: {subscribers} subscribers connected ({} + {}) in {:.1} s",
        per_instance[0], per_instance[1], subscribe.seconds
    ));

    let mut by_connection: Vec<Vec<tonic::Streaming<SubscribeResponse>>> =
        (0..channels.len()).map(|_| Vec::new()).collect();
    for (connection, stream) in opened {
        by_connection[connection].push(stream);
    }
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let receivers: Vec<_> = by_connection
        .into_iter()
        .map(|streams| tokio::spawn(receive(streams, Arc::clone(&counters), stop.clone())))
        .collect();

    let interval = Duration::from_secs(1) / sizes.rate;
    let warm_up = (f64::from(sizes.rate) * sizes.warm_up.as_secs_f64()).round() as u64;
    let published = (f64::from(sizes.rate) * sizes.measured.as_secs_f64()).round() as u64;
    progress(&format!(
        "gateway: {}/s notifications to random users for {:.1} s (after {warm_up} to warm up)",
        sizes.rate,
        sizes.measured.as_secs_f64()
    ));
    let publishing = Instant::now();
    let stalls = publish(env, deps, &users, interval, warm_up, published).await?;
    let arrived =
        || counters.warm_up.load(Ordering::Relaxed) + counters.measured.load(Ordering::Relaxed);
    let waited = wait_for_count(
        "every notification delivered",
        publishing,
        warm_up + published,
        deadline_for(warm_up + published, 100),
        arrived,
    )
    .await;
    stop.cancel();
    let mut latency = micros_histogram();
    for receiver in receivers {
        let histogram = receiver.await.context("a receiver panicked")?;
        latency.add(&histogram).context("histogram bounds")?;
    }
    let slow_closed: u64 = instances
        .iter()
        .map(|instance| instance.hub.stats().slow_closed.load(Ordering::Relaxed))
        .sum();
    let stream_errors = counters.errors.load(Ordering::Relaxed);
    waited.with_context(|| {
        format!("{slow_closed} subscribers closed as too slow, {stream_errors} streams failed")
    })?;
    let delivered = counters.measured.load(Ordering::Relaxed);
    anyhow::ensure!(
        delivered == published && arrived() == warm_up + published,
        "{} notifications arrived for {} sent: some twice",
        arrived(),
        warm_up + published
    );
    let latency = Percentiles::from_micros(&latency);
    progress(&format!(
        "gateway: {delivered} notifications to {subscribers} subscribers, intended send → received p50 {:.2} p99 {:.2} max {:.2} ms; machine stalls {stalls}",
        latency.p50_ms, latency.p99_ms, latency.max_ms
    ));
    Ok(FanOutRun {
        subscribers_target: sizes.subscribers,
        subscribers,
        per_instance,
        connections: channels.len(),
        streams_per_connection: sizes.streams_per_connection,
        subscribe,
        rate: sizes.rate,
        duration_s: sizes.measured.as_secs_f64(),
        warm_up,
        published,
        delivered,
        latency,
        stalls,
        slow_closed,
        stream_errors,
    })
}

fn session_of(user: &str) -> String {
    format!("sid-{user}")
}

/// Active sessions, as auth writes them (the fields the gateway reads), in pipelines.
async fn seed_sessions(deps: &Deps, users: &[String]) -> anyhow::Result<()> {
    let mut redis = deps.redis.connect_lazy()?;
    let prefix = store_prefix(&deps.redis.key_prefix);
    for chunk in users.chunks(1000) {
        let mut pipe = redis::pipe();
        for user in chunk {
            let key = session_key(&prefix, &session_of(user));
            pipe.hset_multiple(&key, &[("uid", user.as_str()), ("state", "active")])
                .ignore()
                .expire(&key, 3600)
                .ignore();
        }
        let () = pipe
            .query_async(&mut redis)
            .await
            .context("failed to write sessions")?;
    }
    Ok(())
}

/// Publishes `warm_up + count` notifications, one every `interval`, to random users; the
/// machine stalls the pacer saw meanwhile.
async fn publish(
    env: &crate::env::BenchEnv,
    deps: &Deps,
    users: &[String],
    interval: Duration,
    warm_up: u64,
    count: u64,
) -> anyhow::Result<StallSummary> {
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
    let schedule = Schedule::from_now(interval, warm_up + count);
    let wall_start = SystemTime::now() + schedule.start.saturating_duration_since(Instant::now());
    let (mut ticks, stalls) = schedule.ticks()?;
    while let Some(n) = ticks.recv().await {
        let offset = schedule.offset(n);
        let user = &users[usize::try_from(random.next() % users.len() as u64).unwrap_or(0)];
        let notification = Notification {
            event_id: uuid::Uuid::now_v7().to_string(),
            occurred_at: Some(prost_types::Timestamp::from(wall_start + offset)),
            user_id: user.clone(),
            kind: if n < warm_up { WARM_UP } else { MEASURED }.to_owned(),
            title: format!("notification {n}"),
            body: String::new(),
        };
        env.client
            .publish(
                deps.namespace.subject(&format!("notify.user.{user}")),
                notification.encode_to_vec().into(),
            )
            .await
            .context("failed to publish a notification")?;
    }
    env.client
        .flush()
        .await
        .context("failed to flush the notifications")?;
    Ok(stalls.summary())
}

#[derive(Debug, Default)]
struct Counters {
    warm_up: AtomicU64,
    measured: AtomicU64,
    errors: AtomicU64,
}

/// Reads every stream of one connection until `stop`; the latencies of measured
/// notifications, in microseconds.
async fn receive(
    streams: Vec<tonic::Streaming<SubscribeResponse>>,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> hdrhistogram::Histogram<u64> {
    let mut histogram = micros_histogram();
    let mut all = futures::stream::select_all(streams);
    loop {
        let item = tokio::select! {
            () = stop.cancelled() => break,
            item = all.next() => item,
        };
        match item {
            Some(Ok(SubscribeResponse {
                notification: Some(notification),
                ..
            })) => {
                if notification.kind == WARM_UP {
                    counters.warm_up.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let intended = notification
                    .occurred_at
                    .and_then(|at| SystemTime::try_from(at).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                let late = SystemTime::now()
                    .duration_since(intended)
                    .unwrap_or_default();
                let micros = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
                let _ = histogram.record(micros.max(1));
                counters.measured.fetch_add(1, Ordering::Relaxed);
            }
            // A reconnect hint: the gateway is going away.
            Some(Ok(_)) => {}
            Some(Err(status)) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%status, "a notification stream failed");
            }
            None => break,
        }
    }
    histogram
}

/// A small deterministic generator for picking users (xorshift64).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
