//! The `social-feed` consumer: `trading.trade.executed` → one feed item per follower of the
//! trader, in one set-based `INSERT … SELECT` from `follows`, in the consumer's transaction.
//!
//! Built from the event's own payload (push consistency: trading's database is never read).
//! The items are keyed by (follower, trade): a duplicate delivery is absorbed by the inbox,
//! and a re-driven trade (the same trade under a new event id) finds its `feed_trades` row and
//! every item already there, and writes items only for those who followed since. Someone who
//! stopped following the trader before the trade arrives gets no item; the items they already
//! have stay. A trade's first fan-out pays no per-row conflict check (see [`store::fan_out`]).
//!
//! Auxiliary by contract (§1): nothing waits for a feed, and trading never learns whether the
//! consumer is running.

use sqlx::types::chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;
use wharf_events::EventContext;
use wharf_events::consumer::{Handler, HandlerError};
use wharf_proto::wharf::trading::v1::{Side, TradeExecuted};

use crate::convert::{MAX_USER_ID, instant, is_user_id};
use crate::store::{self, FeedTrade};

/// The durable consumer's name: its name on the server and its key in the inbox.
pub const FEED_CONSUMER: &str = "social-feed";

/// The `kind` of a feed item made from a trade.
pub const TRADE_KIND: &str = "trade";

/// What social needs of a trade, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    pub trade_id: Uuid,
    pub user_id: String,
    pub executed_at: DateTime<Utc>,
    pub notional_minor: i64,
}

/// The trade an event carries, or every reason it can never apply.
pub fn trade_of(event: &TradeExecuted) -> Result<Trade, String> {
    let mut problems = Vec::new();
    let trade_id = match Uuid::parse_str(&event.trade_id) {
        Ok(id) => Some(id),
        Err(_) if event.trade_id.is_empty() => {
            problems.push("trade_id is empty".to_owned());
            None
        }
        Err(_) => {
            problems.push(format!("trade_id {:?} is not a UUID", event.trade_id));
            None
        }
    };
    if !is_user_id(&event.user_id) {
        problems.push(format!(
            "user_id must be 1 to {MAX_USER_ID} bytes without control characters"
        ));
    }
    let executed_at = instant(event.occurred_at);
    if executed_at.is_none() {
        problems.push("occurred_at is missing or out of range".to_owned());
    }
    match (trade_id, executed_at) {
        (Some(trade_id), Some(executed_at)) if problems.is_empty() => Ok(Trade {
            trade_id,
            user_id: event.user_id.clone(),
            executed_at,
            notional_minor: event.notional_minor,
        }),
        _ => Err(problems.join("; ")),
    }
}

/// The line a follower reads, e.g. "bought 10 WHRF".
pub fn describe(event: &TradeExecuted) -> String {
    let verb = match Side::try_from(event.side) {
        Ok(Side::Buy) => "bought",
        Ok(Side::Sell) => "sold",
        _ => "traded",
    };
    let instrument: String = event
        .instrument
        .chars()
        .filter(|c| !c.is_control())
        .take(32)
        .collect();
    format!("{verb} {} {instrument}", event.quantity)
}

/// Writes a trade into its trader's followers' feeds.
#[derive(Debug, Clone, Copy, Default)]
pub struct FanOut;

impl Handler<TradeExecuted> for FanOut {
    async fn handle(
        &self,
        _ctx: &EventContext,
        event: TradeExecuted,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), HandlerError> {
        let trade = trade_of(&event).map_err(HandlerError::Permanent)?;
        let written = store::fan_out(
            tx,
            &FeedTrade {
                trade_id: trade.trade_id,
                actor_user_id: trade.user_id,
                kind: TRADE_KIND,
                text: describe(&event),
                occurred_at: trade.executed_at,
            },
        )
        .await?;
        tracing::debug!(trade_id = %trade.trade_id, written, "trade fanned out to feeds");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;

    use super::*;

    fn valid() -> TradeExecuted {
        TradeExecuted {
            event_id: Uuid::now_v7().to_string(),
            occurred_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            trade_id: Uuid::now_v7().to_string(),
            user_id: "user-1".to_owned(),
            instrument: "WHRF".to_owned(),
            side: Side::Sell.into(),
            quantity: 3,
            ..TradeExecuted::default()
        }
    }

    #[test]
    fn a_trade_reads_as_a_line() {
        assert_eq!(describe(&valid()), "sold 3 WHRF");
        assert!(trade_of(&valid()).is_ok());
    }

    #[test]
    fn every_reason_a_trade_can_never_apply_is_named() {
        let cases = [
            (
                TradeExecuted {
                    trade_id: String::new(),
                    ..valid()
                },
                "trade_id is empty",
            ),
            (
                TradeExecuted {
                    trade_id: "t-1".to_owned(),
                    ..valid()
                },
                "is not a UUID",
            ),
            (
                TradeExecuted {
                    user_id: String::new(),
                    ..valid()
                },
                "user_id",
            ),
            (
                TradeExecuted {
                    occurred_at: None,
                    ..valid()
                },
                "occurred_at",
            ),
        ];
        for (event, reason) in cases {
            let refused = trade_of(&event).expect_err(reason);
            assert!(refused.contains(reason), "{refused:?} names {reason:?}");
        }
    }
}
