//! Gamification: the `social-achievements` consumer of `trading.trade.executed` and the
//! declarative rules it evaluates.
//!
//! Each trade is counted once per user in `user_trades` (keyed by trade id, so duplicates,
//! re-driven trades and out-of-order delivery change nothing), then every rule of [`RULES`] is
//! evaluated over the user's counted trades: how many distinct trades, the largest notional,
//! the longest run of consecutive UTC days with a trade. A rule met for the first time unlocks
//! its achievement, once per user (`(user_id, achievement)` is unique). A user's evaluations
//! are serialised with a transaction-scoped advisory lock, so two of their trades applied at
//! once cannot both miss the tenth.
//!
//! After the transaction commits (never before: an achievement rolled back was never
//! unlocked), the [`Announcer`] emits the `FIRE_AND_FORGET` `social.achievement.unlocked` and a
//! `wharf.gateway.v1.Notification` of kind `achievement` on `notify.user.<user_id>` (core
//! NATS). Both are best effort: queued without waiting, dropped and counted when NATS is slow
//! or down, never failing or slowing the consumer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::types::chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use wharf_events::consumer::{Handler, HandlerError};
use wharf_events::{EventContext, FireAndForgetPublisher};
use wharf_proto::wharf::gateway::v1::Notification;
use wharf_proto::wharf::social::v1::AchievementUnlocked;
use wharf_proto::wharf::trading::v1::TradeExecuted;

use crate::convert::timestamp;
use crate::feed::{Trade, trade_of};
use crate::notify::Notifier;

/// The durable consumer's name: its name on the server and its key in the inbox.
pub const ACHIEVEMENTS_CONSUMER: &str = "social-achievements";

/// The `kind` of the notification an unlocked achievement sends.
pub const NOTIFICATION_KIND: &str = "achievement";

/// What a user's counted trades add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, sqlx::FromRow)]
pub struct TradeStats {
    /// Distinct trades.
    pub trades: i64,
    /// The largest notional of one trade, in minor units.
    pub max_notional_minor: i64,
    /// The longest run of consecutive UTC days with at least one trade.
    pub longest_streak_days: i64,
}

/// When a rule is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// At least this many distinct trades.
    Trades(i64),
    /// One trade of at least this notional, in minor units.
    NotionalAtLeast(i64),
    /// Trades on at least this many consecutive UTC days.
    StreakDays(i64),
}

impl Condition {
    pub fn met(self, stats: &TradeStats) -> bool {
        match self {
            Self::Trades(count) => stats.trades >= count,
            Self::NotionalAtLeast(minor) => stats.max_notional_minor >= minor,
            Self::StreakDays(days) => stats.longest_streak_days >= days,
        }
    }
}

/// One achievement and what unlocks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable id, stored and returned by `ListAchievements` (never rename one).
    pub achievement: &'static str,
    pub title: &'static str,
    pub when: Condition,
}

/// Every achievement there is. Adding a rule is adding a line: users who already meet it
/// unlock it with their next trade.
pub const RULES: &[Rule] = &[
    Rule {
        achievement: "first_trade",
        title: "First trade",
        when: Condition::Trades(1),
    },
    Rule {
        achievement: "ten_trades",
        title: "Ten trades",
        when: Condition::Trades(10),
    },
    Rule {
        achievement: "big_trade",
        title: "Big trade: 10,000.00 in one order",
        when: Condition::NotionalAtLeast(1_000_000),
    },
    Rule {
        achievement: "three_day_streak",
        title: "Three-day streak",
        when: Condition::StreakDays(3),
    },
];

/// The rules `stats` meets.
pub fn met(stats: &TradeStats) -> impl Iterator<Item = &'static Rule> + '_ {
    RULES.iter().filter(|rule| rule.when.met(stats))
}

/// An achievement this transaction unlocked, to announce after it commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlock {
    pub user_id: String,
    pub achievement: String,
    pub title: String,
    pub trade_id: String,
    pub unlocked_at: DateTime<Utc>,
}

/// Unlocks not yet announced, by the stream sequence of the message that unlocked them.
/// An entry whose transaction never commits (rolled back, then dead-lettered) is never
/// announced; [`Pending::put`] forgets such entries after [`FORGET_AFTER`].
#[derive(Debug, Default)]
struct Pending {
    entries: Mutex<HashMap<u64, (Instant, Vec<Unlock>)>>,
}

const FORGET_AFTER: Duration = Duration::from_secs(600);
const PRUNE_ABOVE: usize = 1024;

impl Pending {
    fn put(&self, sequence: u64, unlocks: Vec<Unlock>) {
        let mut entries = self.entries.lock().expect("pending unlocks lock");
        if unlocks.is_empty() {
            // A retry that unlocks nothing replaces an attempt that was rolled back.
            entries.remove(&sequence);
            return;
        }
        if entries.len() >= PRUNE_ABOVE {
            entries.retain(|_, (at, _)| at.elapsed() < FORGET_AFTER);
        }
        entries.insert(sequence, (Instant::now(), unlocks));
    }

    fn take(&self, sequence: u64) -> Vec<Unlock> {
        self.entries
            .lock()
            .expect("pending unlocks lock")
            .remove(&sequence)
            .map(|(_, unlocks)| unlocks)
            .unwrap_or_default()
    }
}

/// Evaluates the rules over each trade event and records what it unlocks.
#[derive(Debug, Clone, Default)]
pub struct Gamify {
    pending: Arc<Pending>,
}

/// Announces what committed transactions unlocked: run by the consumer after each commit.
#[derive(Debug, Clone)]
pub struct Announcer {
    pending: Arc<Pending>,
    events: FireAndForgetPublisher,
    notifier: Notifier,
}

impl Gamify {
    pub fn new() -> Self {
        Self::default()
    }

    /// The announcer of this handler's unlocks, emitting through `events` and `notifier`.
    pub fn announcer(&self, events: FireAndForgetPublisher, notifier: Notifier) -> Announcer {
        Announcer {
            pending: Arc::clone(&self.pending),
            events,
            notifier,
        }
    }
}

/// Class of the advisory locks that serialise one user's evaluations (the two-key form, so it
/// never meets the outbox's one-key locks).
const USER_LOCK_CLASS: i32 = 0x50c1;

/// Counts the trade and unlocks what it newly earns; returns the unlocks.
pub async fn evaluate(
    tx: &mut Transaction<'_, Postgres>,
    trade: &Trade,
) -> Result<Vec<Unlock>, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(USER_LOCK_CLASS)
        .bind(&trade.user_id)
        .execute(&mut **tx)
        .await?;
    let counted = sqlx::query(
        "INSERT INTO user_trades (user_id, trade_id, notional_minor, executed_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(&trade.user_id)
    .bind(trade.trade_id)
    .bind(trade.notional_minor)
    .bind(trade.executed_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if counted == 0 {
        // A trade counted before changes no rule's outcome.
        return Ok(Vec::new());
    }
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM achievements WHERE user_id = $1")
        .bind(&trade.user_id)
        .fetch_one(&mut **tx)
        .await?;
    if usize::try_from(held).is_ok_and(|held| held >= RULES.len()) {
        return Ok(Vec::new());
    }
    // Streak: consecutive days minus their rank is constant along a run (gaps and islands).
    let stats: TradeStats = sqlx::query_as(
        "WITH mine AS (SELECT notional_minor, executed_at FROM user_trades WHERE user_id = $1), \
              days AS (SELECT DISTINCT (executed_at AT TIME ZONE 'UTC')::date AS day FROM mine), \
              runs AS (SELECT count(*) AS length FROM \
                         (SELECT day - (row_number() OVER (ORDER BY day))::int AS island FROM days) d \
                       GROUP BY island) \
         SELECT (SELECT count(*) FROM mine) AS trades, \
                (SELECT coalesce(max(notional_minor), 0) FROM mine) AS max_notional_minor, \
                (SELECT coalesce(max(length), 0) FROM runs) AS longest_streak_days",
    )
    .bind(&trade.user_id)
    .fetch_one(&mut **tx)
    .await?;
    let (ids, titles): (Vec<&str>, Vec<&str>) = met(&stats)
        .map(|rule| (rule.achievement, rule.title))
        .unzip();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let unlocked: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
        "INSERT INTO achievements (user_id, achievement, title, trade_id) \
         SELECT $1, rule.achievement, rule.title, $2 \
         FROM unnest($3::text[], $4::text[]) AS rule (achievement, title) \
         ON CONFLICT DO NOTHING \
         RETURNING achievement, title, unlocked_at",
    )
    .bind(&trade.user_id)
    .bind(trade.trade_id)
    .bind(ids)
    .bind(titles)
    .fetch_all(&mut **tx)
    .await?;
    Ok(unlocked
        .into_iter()
        .map(|(achievement, title, unlocked_at)| Unlock {
            user_id: trade.user_id.clone(),
            achievement,
            title,
            trade_id: trade.trade_id.to_string(),
            unlocked_at,
        })
        .collect())
}

impl Handler<TradeExecuted> for Gamify {
    async fn handle(
        &self,
        ctx: &EventContext,
        event: TradeExecuted,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), HandlerError> {
        let trade = trade_of(&event).map_err(HandlerError::Permanent)?;
        let unlocks = evaluate(tx, &trade).await?;
        for unlock in &unlocks {
            tracing::debug!(user_id = %unlock.user_id, achievement = %unlock.achievement, "achievement unlocked");
        }
        self.pending.put(ctx.stream_sequence, unlocks);
        Ok(())
    }
}

impl Announcer {
    /// Emits the event and the notification of every achievement the message at `ctx`
    /// unlocked. Returns at once: both are queued, never awaited. Run as the consumer's
    /// [`after_commit`](wharf_events::Consumer::after_commit) hook, so only for trades whose
    /// unlocks committed, and never for a duplicate.
    pub fn announce(&self, ctx: &EventContext) {
        for unlock in self.pending.take(ctx.stream_sequence) {
            let at = timestamp(unlock.unlocked_at);
            self.events.emit(AchievementUnlocked {
                event_id: String::new(),
                occurred_at: Some(at),
                user_id: unlock.user_id.clone(),
                achievement: unlock.achievement.clone(),
                title: unlock.title.clone(),
                trade_id: unlock.trade_id.clone(),
            });
            self.notifier.notify(&Notification {
                event_id: uuid::Uuid::now_v7().to_string(),
                occurred_at: Some(at),
                user_id: unlock.user_id,
                kind: NOTIFICATION_KIND.to_owned(),
                title: format!("Achievement unlocked: {}", unlock.title),
                body: format!(
                    "You unlocked \u{201c}{}\u{201d} with trade {}.",
                    unlock.title, unlock.trade_id
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(stats: TradeStats) -> Vec<&'static str> {
        met(&stats).map(|rule| rule.achievement).collect()
    }

    #[test]
    fn rules_unlock_on_their_thresholds() {
        assert!(ids(TradeStats::default()).is_empty());
        let first = TradeStats {
            trades: 1,
            max_notional_minor: 10,
            longest_streak_days: 1,
        };
        assert_eq!(ids(first), ["first_trade"]);
        let all = TradeStats {
            trades: 10,
            max_notional_minor: 1_000_000,
            longest_streak_days: 3,
        };
        assert_eq!(
            ids(all),
            ["first_trade", "ten_trades", "big_trade", "three_day_streak"]
        );
        let almost = TradeStats {
            trades: 9,
            max_notional_minor: 999_999,
            longest_streak_days: 2,
        };
        assert_eq!(ids(almost), ["first_trade"]);
    }

    #[test]
    fn rule_ids_are_unique() {
        let mut seen = std::collections::HashSet::new();
        assert!(RULES.iter().all(|rule| seen.insert(rule.achievement)));
    }
}
