//! Social: a trade fanned out to a popular trader's followers, against the same rows written in
//! plain SQL.
//!
//! - S1, the limit: one transaction inserting the trade's feed rows (one per follower) with a
//!   plain `INSERT … SELECT` from `follows` into a copy of `feed_items` (same columns, indexes
//!   and defaults), no consumer, no NATS. Best of the rounds.
//! - Fan-out: the real service (`wharf_social::App`, its `social-feed` consumer) receives a
//!   `trading.trade.executed` by a trader with `followers` followers; timed from the publish
//!   to the commit of the transaction that wrote every follower's item. Best of the rounds.
//!   Target ≥ 0.7 × S1 feed items per second. Besides S1's rows, its transaction holds the
//!   event's inbox row and the trade's `feed_trades` row (what spares the items a per-row
//!   conflict check), and the time includes the publish and the delivery.
//!
//! Followers and follows are seeded in SQL (10,000; 2,000 in quick mode). The service runs in
//! this process with all its consumers, as in `wharf dev`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use wharf_events::Topology;
use wharf_events::consumer::ConsumerStats;
use wharf_proto::Event;
use wharf_proto::wharf::trading::v1::{Side, TradeExecuted};
use wharf_social::{App, Deps, SocialConfig};
use wharf_tokens::TokensConfig;

use super::{progress, wait_for_count};
use crate::cli::Params;
use crate::env::BenchEnv;
use crate::results::Throughput;

/// The trader every follower follows.
const TRADER: &str = "bench-trader";
/// The ratio the fan-out should reach against the plain insert.
pub const TARGET_RATIO: f64 = 0.7;

#[derive(Debug, Clone, Serialize)]
pub struct SocialRun {
    /// Followers of the trader: feed items written per trade.
    pub followers: u64,
    /// Rounds of each measurement (the best is reported).
    pub rounds: u32,
    /// S1: the trade's feed rows inserted in plain SQL, one transaction (rows per second).
    pub raw_insert: Throughput,
    /// One trade through the feed consumer: publish → every follower's item committed
    /// (feed items per second).
    pub fan_out: Throughput,
    /// `fan_out.per_second / raw_insert.per_second`; target ≥ [`TARGET_RATIO`].
    pub ratio: f64,
    pub target_ratio: f64,
}

pub async fn run(env: &BenchEnv, params: &Params) -> anyhow::Result<SocialRun> {
    let followers: u64 = if params.quick { 2_000 } else { 10_000 };
    let rounds: u32 = if params.quick { 2 } else { 3 };
    let service = Service::start(env).await?;
    let result = measure(&service, followers, rounds).await;
    service.stop().await;
    let run = result?;
    progress(&format!(
        "social: {} followers — fan-out {:.0} items/s ({:.1} ms) vs plain insert {:.0} rows/s ({:.1} ms): {:.2}× (target ≥ {TARGET_RATIO}×)",
        run.followers,
        run.fan_out.per_second,
        run.fan_out.seconds * 1e3,
        run.raw_insert.per_second,
        run.raw_insert.seconds * 1e3,
        run.ratio,
    ));
    Ok(run)
}

async fn measure(service: &Service, followers: u64, rounds: u32) -> anyhow::Result<SocialRun> {
    progress(&format!("social: seeding {followers} followers"));
    service.seed(followers).await?;
    // Warm the consumer (pull subscription, pool, prepared statements) with a trade no one
    // follows, so the first timed trade pays for none of it.
    service
        .fan_out_once("bench-nobody", 0, Duration::from_secs(60))
        .await?;

    let mut raw_best: Option<Throughput> = None;
    let mut fan_best: Option<Throughput> = None;
    for round in 0..rounds {
        let raw = service.raw_insert(followers).await?;
        let fan = service
            .fan_out_once(TRADER, followers, super::deadline_for(followers, 500))
            .await?;
        progress(&format!(
            "social round {}: plain insert {:.0} rows/s, fan-out {:.0} items/s",
            round + 1,
            raw.per_second,
            fan.per_second
        ));
        if raw_best.is_none_or(|best| raw.per_second > best.per_second) {
            raw_best = Some(raw);
        }
        if fan_best.is_none_or(|best| fan.per_second > best.per_second) {
            fan_best = Some(fan);
        }
    }
    let raw_insert = raw_best.context("no rounds measured")?;
    let fan_out = fan_best.context("no rounds measured")?;
    Ok(SocialRun {
        followers,
        rounds,
        raw_insert,
        fan_out,
        ratio: fan_out.per_second / raw_insert.per_second.max(f64::MIN_POSITIVE),
        target_ratio: TARGET_RATIO,
    })
}

struct Service {
    pool: sqlx::PgPool,
    js: async_nats::jetstream::Context,
    topology: Topology,
    feed: Arc<ConsumerStats>,
    stop: CancellationToken,
    background: tokio::task::JoinHandle<()>,
}

impl Service {
    async fn start(env: &BenchEnv) -> anyhow::Result<Self> {
        let database = env.database_config();
        for schema in wharf_social::schemas() {
            wharf_runtime::db::migrate(&database, &schema)
                .await
                .context("failed to migrate the social schema")?;
        }
        let topology = env.topology("social").await?;
        let mut tokens = TokensConfig::default();
        tokens.with_development_key();
        let app = App::build(
            Deps {
                database,
                nats: env.client.clone(),
                namespace: topology.namespace.clone(),
                relay: wharf_outbox::RelayConfig::default(),
            },
            SocialConfig {
                // Nothing here produces registration replies.
                relay: false,
                ..SocialConfig::default()
            },
            &tokens,
        )
        .await
        .context("failed to start the social service")?;
        let pool = app.pool().clone();
        let feed = app.feed_stats();
        let stop = CancellationToken::new();
        let background = {
            let stop = stop.clone();
            tokio::spawn(async move {
                if let Err(err) = app.run_until_stopped(stop).await {
                    tracing::error!(error = %err, "social background work failed");
                }
            })
        };
        Ok(Self {
            pool,
            js: env.js.clone(),
            topology,
            feed,
            stop,
            background,
        })
    }

    /// The trader, `followers` profiles following them, and the table the plain insert
    /// writes (a copy of `feed_items`).
    async fn seed(&self, followers: u64) -> anyhow::Result<()> {
        let count = i64::try_from(followers).context("too many followers")?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO profiles (user_id, handle, display_name, registration_event_id) \
             SELECT 'bench-trader', 'bench_trader', 'Bench trader', gen_random_uuid() \
             UNION ALL \
             SELECT 'bench-fan-' || n, 'fan_' || n, 'Fan ' || n, gen_random_uuid() \
             FROM generate_series(1, $1::bigint) AS n",
        )
        .bind(count)
        .execute(&mut *tx)
        .await
        .context("failed to seed the profiles")?;
        sqlx::query(
            "INSERT INTO follows (followee_id, follower_id) \
             SELECT $1, 'bench-fan-' || n FROM generate_series(1, $2::bigint) AS n",
        )
        .bind(TRADER)
        .bind(count)
        .execute(&mut *tx)
        .await
        .context("failed to seed the follows")?;
        sqlx::query(
            "UPDATE profiles SET \
                 follower_count = CASE WHEN user_id = $1 THEN $2 ELSE 0 END, \
                 following_count = CASE WHEN user_id = $1 THEN 0 ELSE 1 END",
        )
        .bind(TRADER)
        .bind(count)
        .execute(&mut *tx)
        .await
        .context("failed to count the follows")?;
        sqlx::query(
            "CREATE TABLE feed_items_plain (LIKE feed_items INCLUDING DEFAULTS INCLUDING INDEXES)",
        )
        .execute(&mut *tx)
        .await
        .context("failed to create the plain insert's table")?;
        tx.commit().await?;
        sqlx::query("ANALYZE profiles, follows")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// S1: the trade's rows in one plain transaction (emptied first, outside the timing).
    async fn raw_insert(&self, followers: u64) -> anyhow::Result<Throughput> {
        sqlx::query("TRUNCATE feed_items_plain")
            .execute(&self.pool)
            .await?;
        let trade_id = uuid::Uuid::now_v7();
        let start = Instant::now();
        let mut tx = self.pool.begin().await?;
        let written = sqlx::query(
            "INSERT INTO feed_items_plain (follower_id, trade_id, actor_user_id, kind, text, occurred_at) \
             SELECT f.follower_id, $2, $1, 'trade', 'bought 10 WHRF', now() \
             FROM follows f WHERE f.followee_id = $1",
        )
        .bind(TRADER)
        .bind(trade_id)
        .execute(&mut *tx)
        .await
        .context("the plain insert failed")?
        .rows_affected();
        tx.commit().await?;
        let elapsed = start.elapsed();
        anyhow::ensure!(
            written == followers,
            "the plain insert wrote {written} rows, not {followers}"
        );
        Ok(Throughput::new(written, elapsed))
    }

    /// Publishes a trade by `trader` and waits for the consumer to commit it; checks that it
    /// wrote `followers` items.
    async fn fan_out_once(
        &self,
        trader: &str,
        followers: u64,
        within: Duration,
    ) -> anyhow::Result<Throughput> {
        let event = trade(trader);
        let before = self.feed.applied();
        let (headers, payload) = wharf_events::envelope::encode(&event, None);
        let subject = self.topology.namespace.subject(TradeExecuted::SUBJECT);
        let start = Instant::now();
        self.js
            .publish_with_headers(subject, headers, payload)
            .await
            .context("failed to publish the trade")?
            .await
            .context("the trade was not acknowledged")?;
        let feed = Arc::clone(&self.feed);
        let (elapsed, _) = wait_for_count(
            "the feed consumer to fan the trade out",
            start,
            before + 1,
            within,
            move || feed.applied(),
        )
        .await?;
        let trade_id = uuid::Uuid::parse_str(&event.trade_id)?;
        let written: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM feed_items WHERE trade_id = $1 AND actor_user_id = $2",
        )
        .bind(trade_id)
        .bind(trader)
        .fetch_one(&self.pool)
        .await?;
        anyhow::ensure!(
            u64::try_from(written).ok() == Some(followers),
            "the fan-out wrote {written} feed items, not {followers}"
        );
        Ok(Throughput::new(followers, elapsed))
    }

    async fn stop(self) {
        self.stop.cancel();
        if tokio::time::timeout(Duration::from_secs(60), self.background)
            .await
            .is_err()
        {
            eprintln!("wharf-bench: the social service did not stop within 60 s");
        }
    }
}

fn trade(trader: &str) -> TradeExecuted {
    TradeExecuted {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: Some(wharf_events::envelope::now()),
        account_id: uuid::Uuid::now_v7().to_string(),
        order_id: uuid::Uuid::now_v7().to_string(),
        trade_id: uuid::Uuid::now_v7().to_string(),
        user_id: trader.to_owned(),
        instrument: "WHRF".to_owned(),
        side: Side::Buy.into(),
        quantity: 10,
        price_minor: 12_500,
        notional_minor: 125_000,
        fee_minor: 125,
        currency: "USD".to_owned(),
    }
}
