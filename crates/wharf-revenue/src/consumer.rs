//! The `revenue-ledger` consumer: `trading.trade.executed` → a ledger entry and
//! `revenue.fee.recorded`, in the consumer's transaction (next to the inbox row).
//!
//! Idempotent twice over:
//! - the same event delivered again is absorbed by the inbox before this handler runs;
//! - the same *trade* under a new event id (trading's reconciliation re-drives a trade whose
//!   order never settled) finds the trade's entry by `trade_id` and writes nothing, but emits
//!   a fresh `revenue.fee.recorded` for that entry, so the order can settle. A re-drive that
//!   disagrees with the entry (another fee, another order) contradicts the ledger and is
//!   dead-lettered for an operator, never applied.
//!
//! An event that can never apply (ids that are not UUIDs, an empty trade id, a negative fee,
//! a fee in another currency than the ledger's) is dead-lettered at once.

use std::fmt::Write as _;

use sqlx::types::chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;
use wharf_events::EventContext;
use wharf_events::consumer::{Handler, HandlerError};
use wharf_outbox::OutboxError;
use wharf_proto::wharf::revenue::v1::FeeRecorded;
use wharf_proto::wharf::trading::v1::TradeExecuted;

use crate::config::is_currency;
use crate::ledger::{self, Entry, NewEntry, RecordError, Recorded};

/// The durable consumer's name: its name on the server and its key in the inbox.
pub const LEDGER_CONSUMER: &str = "revenue-ledger";

/// Longest instrument symbol and user id the ledger stores (its CHECK constraints agree).
pub const MAX_INSTRUMENT: usize = 32;
const MAX_USER_ID: usize = 200;

/// Records a trade's fee in the ledger.
#[derive(Debug, Clone)]
pub struct RecordFee {
    currency: String,
}

impl RecordFee {
    /// A handler for a ledger kept in `currency`.
    pub fn new(currency: impl Into<String>) -> Self {
        Self {
            currency: currency.into(),
        }
    }

    /// The entry an event asks for, or every reason it can never apply.
    pub fn entry_of(&self, event: &TradeExecuted) -> Result<NewEntry, String> {
        let mut problems = Vec::new();
        let mut uuid = |field: &str, raw: &str| match Uuid::parse_str(raw) {
            Ok(id) => Some(id),
            Err(_) if raw.is_empty() => {
                problems.push(format!("{field} is empty"));
                None
            }
            Err(_) => {
                problems.push(format!("{field} {raw:?} is not a UUID"));
                None
            }
        };
        let event_id = uuid("event_id", &event.event_id);
        let trade_id = uuid("trade_id", &event.trade_id);
        let order_id = uuid("order_id", &event.order_id);
        let account_id = uuid("account_id", &event.account_id);

        if event.user_id.is_empty() || event.user_id.len() > MAX_USER_ID {
            problems.push(format!("user_id must be 1 to {MAX_USER_ID} bytes"));
        }
        if !is_instrument(&event.instrument) {
            problems.push(format!(
                "instrument {:?} is not 1 to {MAX_INSTRUMENT} visible ASCII characters",
                event.instrument
            ));
        }
        if event.fee_minor < 0 {
            problems.push(format!("fee_minor {} is negative", event.fee_minor));
        }
        if !is_currency(&event.currency) {
            problems.push(format!(
                "currency {:?} is not an ISO 4217 code",
                event.currency
            ));
        } else if event.currency != self.currency {
            problems.push(format!(
                "the fee is in {}, but the ledger is kept in {}",
                event.currency, self.currency
            ));
        }
        let executed_at = event
            .occurred_at
            .and_then(|at| {
                u32::try_from(at.nanos)
                    .ok()
                    .map(|nanos| (at.seconds, nanos))
            })
            .and_then(|(seconds, nanos)| DateTime::<Utc>::from_timestamp(seconds, nanos));
        if executed_at.is_none() {
            problems.push("occurred_at is missing or out of range".to_owned());
        }

        match (event_id, trade_id, order_id, account_id, executed_at) {
            (
                Some(event_id),
                Some(trade_id),
                Some(order_id),
                Some(account_id),
                Some(executed_at),
            ) if problems.is_empty() => Ok(NewEntry {
                id: Uuid::now_v7(),
                event_id,
                trade_id,
                order_id,
                account_id,
                user_id: event.user_id.clone(),
                instrument: event.instrument.clone(),
                fee_minor: event.fee_minor,
                currency: event.currency.clone(),
                trade_executed_at: executed_at,
            }),
            _ => Err(problems.join("; ")),
        }
    }
}

/// 1 to [`MAX_INSTRUMENT`] visible ASCII characters: what the ledger accepts as a symbol, and
/// what a report may filter on.
pub fn is_instrument(symbol: &str) -> bool {
    (1..=MAX_INSTRUMENT).contains(&symbol.len()) && symbol.bytes().all(|b| b.is_ascii_graphic())
}

fn fee_recorded(entry: &Entry) -> FeeRecorded {
    FeeRecorded {
        // Filled in by `enqueue`: every emission is an event of its own.
        event_id: String::new(),
        occurred_at: None,
        account_id: entry.account_id.to_string(),
        order_id: entry.order_id.to_string(),
        trade_id: entry.trade_id.to_string(),
        ledger_entry_id: entry.id.to_string(),
        fee_minor: entry.fee_minor,
        currency: entry.currency.clone(),
    }
}

fn describe_disagreement(wanted: &NewEntry, entry: &Entry) -> String {
    let mut out = format!(
        "trade {} was re-driven with other details than its ledger entry {}:",
        entry.trade_id, entry.id
    );
    let mut differs =
        |field: &str, event: &dyn std::fmt::Display, ledger: &dyn std::fmt::Display| {
            let _ = write!(out, " {field} {event} (ledger: {ledger})");
        };
    if wanted.order_id != entry.order_id {
        differs("order_id", &wanted.order_id, &entry.order_id);
    }
    if wanted.account_id != entry.account_id {
        differs("account_id", &wanted.account_id, &entry.account_id);
    }
    if wanted.instrument != entry.instrument {
        differs("instrument", &wanted.instrument, &entry.instrument);
    }
    if wanted.fee_minor != entry.fee_minor {
        differs("fee_minor", &wanted.fee_minor, &entry.fee_minor);
    }
    if wanted.currency != entry.currency {
        differs("currency", &wanted.currency, &entry.currency);
    }
    out
}

impl Handler<TradeExecuted> for RecordFee {
    async fn handle(
        &self,
        ctx: &EventContext,
        event: TradeExecuted,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), HandlerError> {
        let wanted = self.entry_of(&event).map_err(HandlerError::Permanent)?;
        let entry = match ledger::record(tx, &wanted).await {
            Ok(Recorded::New(entry)) => {
                // Debug: this is the hot path, and the entry commits only with the inbox row.
                tracing::debug!(
                    trade_id = %entry.trade_id,
                    ledger_entry_id = %entry.id,
                    fee_minor = entry.fee_minor,
                    "ledger entry written"
                );
                entry
            }
            Ok(Recorded::Existing(entry)) if wanted.agrees_with(&entry) => {
                tracing::info!(
                    trade_id = %entry.trade_id,
                    ledger_entry_id = %entry.id,
                    event_id = %ctx.envelope.event_id,
                    "trade re-driven: already in the ledger, announcing its fee again"
                );
                entry
            }
            Ok(Recorded::Existing(entry)) => {
                return Err(HandlerError::Permanent(describe_disagreement(
                    &wanted, &entry,
                )));
            }
            Err(RecordError::EventIdTaken { event_id }) => {
                return Err(HandlerError::Permanent(format!(
                    "event {event_id} already recorded another trade than {}",
                    wanted.trade_id
                )));
            }
            Err(RecordError::Database(err)) => return Err(HandlerError::Database(err)),
        };
        wharf_outbox::enqueue(tx, fee_recorded(&entry))
            .await
            .map_err(|err| match err {
                OutboxError::Database(err) => HandlerError::Database(err),
                OutboxError::BadEventId(id) => {
                    HandlerError::Permanent(format!("fee event id {id:?} is not a UUID"))
                }
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> TradeExecuted {
        TradeExecuted {
            event_id: Uuid::now_v7().to_string(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            account_id: Uuid::now_v7().to_string(),
            order_id: Uuid::now_v7().to_string(),
            trade_id: Uuid::now_v7().to_string(),
            user_id: "user-1".to_owned(),
            instrument: "WHRF".to_owned(),
            fee_minor: 42,
            currency: "USD".to_owned(),
            ..TradeExecuted::default()
        }
    }

    #[test]
    fn a_valid_trade_becomes_an_entry() {
        let entry = RecordFee::new("USD").entry_of(&valid()).expect("valid");
        assert_eq!(entry.fee_minor, 42);
        assert_eq!(entry.trade_executed_at.timestamp(), 1_700_000_000);
    }

    #[test]
    fn every_reason_an_event_can_never_apply_is_named() {
        let handler = RecordFee::new("USD");
        let cases: Vec<(TradeExecuted, &str)> = vec![
            (
                TradeExecuted {
                    trade_id: String::new(),
                    ..valid()
                },
                "trade_id is empty",
            ),
            (
                TradeExecuted {
                    order_id: "o-1".to_owned(),
                    ..valid()
                },
                "order_id \"o-1\" is not a UUID",
            ),
            (
                TradeExecuted {
                    fee_minor: -1,
                    ..valid()
                },
                "fee_minor -1 is negative",
            ),
            (
                TradeExecuted {
                    currency: "EUR".to_owned(),
                    ..valid()
                },
                "the fee is in EUR, but the ledger is kept in USD",
            ),
            (
                TradeExecuted {
                    instrument: "W H".to_owned(),
                    ..valid()
                },
                "instrument",
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
            let refused = handler.entry_of(&event).expect_err(reason);
            assert!(refused.contains(reason), "{refused:?} names {reason:?}");
        }
    }
}
