//! Settlement: `revenue.fee.recorded` moves the order `FILLED → SETTLED`.
//!
//! Applied in the consumer's transaction next to its inbox row. A second `FeeRecorded` for an
//! order already settled (a re-drive answered twice) changes nothing. One for an order that is
//! not FILLED (unknown, NEW, REJECTED) breaks the state machine: dead-lettered, never forced.

use sqlx::{Postgres, Transaction};
use uuid::Uuid;
use wharf_events::EventContext;
use wharf_events::consumer::{Handler, HandlerError};
use wharf_proto::wharf::revenue::v1::FeeRecorded;

/// The consumer's durable name.
pub const CONSUMER: &str = "trading-settlement";

#[derive(Debug, Clone, Copy, Default)]
pub struct Settle;

impl Handler<FeeRecorded> for Settle {
    async fn handle(
        &self,
        _ctx: &EventContext,
        event: FeeRecorded,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), HandlerError> {
        let order_id = Uuid::parse_str(&event.order_id).map_err(|_| {
            HandlerError::Permanent(format!("order_id {:?} is not a UUID", event.order_id))
        })?;
        let state: Option<(String,)> =
            sqlx::query_as("SELECT state FROM orders WHERE id = $1 FOR UPDATE")
                .bind(order_id)
                .fetch_optional(&mut **tx)
                .await?;
        match state.as_ref().map(|(state,)| state.as_str()) {
            Some("FILLED") => {
                sqlx::query("UPDATE orders SET state = 'SETTLED' WHERE id = $1")
                    .bind(order_id)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }
            Some("SETTLED") => Ok(()),
            Some(other) => Err(HandlerError::Permanent(format!(
                "fee recorded for order {order_id}, which is {other}, not FILLED"
            ))),
            None => Err(HandlerError::Permanent(format!("no order {order_id}"))),
        }
    }
}
