//! What flows through every scenario: realistic `TradeExecuted` events, and the revenue-like
//! ledger they are applied to.
//!
//! The consumer's handler ([`LedgerHandler`]) and L3 run the same SQL ([`INBOX_INSERT`],
//! [`record`]), so the consumer drain is compared with exactly the work it has to do.

use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use bytes::Bytes;
use prost_types::Timestamp;
use sqlx::{Postgres, Transaction};
use wharf_events::consumer::Handler;
use wharf_events::envelope::{self, Envelope};
use wharf_events::{EventContext, HandlerError};
use wharf_proto::Event;
use wharf_proto::wharf::trading::v1::{Side, TradeExecuted};

/// Accounts the events spread over: ordering keys, and so the relay's 64 buckets.
pub const ACCOUNTS: u64 = 1_000;

/// The consumer's name (its durable and its inbox key); L3 writes the same inbox rows.
pub const CONSUMER: &str = "bench-ledger";

pub const LEDGER_DDL: &str = "CREATE TABLE ledger (
    entry_id    BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    UUID        NOT NULL UNIQUE,
    account     TEXT        NOT NULL,
    trade_id    TEXT        NOT NULL,
    fee         BIGINT      NOT NULL CHECK (fee >= 0),
    currency    TEXT        NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// The consumer runtime's inbox insert, verbatim.
pub const INBOX_INSERT: &str =
    "INSERT INTO inbox (consumer, event_id, subject) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

/// Trade number `seq` of account `seq % ACCOUNTS`, with a fresh event id and the given time.
pub fn trade(seq: u64, occurred_at: SystemTime) -> TradeExecuted {
    let quantity = 1 + i64::try_from(seq % 100).unwrap_or(0);
    let price_minor = 12_345;
    let notional_minor = quantity * price_minor;
    TradeExecuted {
        event_id: envelope::new_event_id(),
        occurred_at: Some(Timestamp::from(occurred_at)),
        account_id: format!("acc-{:06}", seq % ACCOUNTS),
        order_id: uuid::Uuid::now_v7().to_string(),
        trade_id: uuid::Uuid::now_v7().to_string(),
        user_id: format!("user-{:06}", seq % ACCOUNTS),
        instrument: "WHRF".to_owned(),
        side: if seq.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        } as i32,
        quantity,
        price_minor,
        notional_minor,
        fee_minor: notional_minor / 1_000 + 1,
        currency: "EUR".to_owned(),
    }
}

/// A NATS message exactly as the relay would send `event`: its envelope headers (no
/// traceparent, as the relay's rows carry none without a tracer) and its protobuf payload.
pub fn message(event: &TradeExecuted) -> (HeaderMap, Bytes) {
    let headers = Envelope::of(event, None).headers();
    (headers, Bytes::from(prost::Message::encode_to_vec(event)))
}

/// The ledger insert, inside the caller's transaction.
pub async fn record(
    tx: &mut Transaction<'_, Postgres>,
    event_id: uuid::Uuid,
    trade: &TradeExecuted,
) -> Result<(), sqlx::Error> {
    let occurred = trade
        .occurred_at
        .and_then(|at| SystemTime::try_from(at).ok())
        .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default();
    sqlx::query(
        "INSERT INTO ledger (event_id, account, trade_id, fee, currency, occurred_at) \
         VALUES ($1, $2, $3, $4, $5, to_timestamp($6))",
    )
    .bind(event_id)
    .bind(&trade.account_id)
    .bind(&trade.trade_id)
    .bind(trade.fee_minor)
    .bind(&trade.currency)
    .bind(occurred.as_secs_f64())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Called inside the consumer's transaction with the event's intended send time (its
/// `occurred_at`), so the latency run can time it once the transaction committed.
pub trait Observer: Send + Sync + 'static {
    fn applying(&self, event_id: &str, intended: SystemTime);
}

/// The consumer's handler: one ledger row per trade, in the consumer's transaction.
#[derive(Debug, Default)]
pub struct LedgerHandler<O>(pub O);

impl<O: Observer> Handler<TradeExecuted> for LedgerHandler<O> {
    async fn handle(
        &self,
        ctx: &EventContext,
        event: TradeExecuted,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), HandlerError> {
        let event_id = uuid::Uuid::parse_str(&ctx.envelope.event_id)
            .map_err(|err| HandlerError::Permanent(format!("bad event id: {err}")))?;
        record(tx, event_id, &event).await?;
        if let Some(intended) = event
            .occurred_at
            .and_then(|at| SystemTime::try_from(at).ok())
        {
            self.0.applying(&ctx.envelope.event_id, intended);
        }
        Ok(())
    }
}

/// An observer that observes nothing, for the drain.
#[derive(Debug, Default)]
pub struct Unobserved;

impl Observer for Unobserved {
    fn applying(&self, _event_id: &str, _intended: SystemTime) {}
}

/// The subject the consumer reads and the relay publishes to, in `namespace`.
pub fn subject(namespace: &wharf_events::Namespace) -> String {
    namespace.subject(TradeExecuted::SUBJECT)
}

/// `count` over `elapsed` as a rate.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}
