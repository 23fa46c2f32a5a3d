//! Reconciliation: declared invariants of the trading side, each with its repair.
//!
//! | invariant | found by | repair |
//! |---|---|---|
//! | `order-settles` | an order FILLED for longer than `settle_after` | re-drive: its trade event is emitted again under a new event id (revenue applies a trade once whatever the event, and answers with a fresh `fee.recorded`) |
//! | `audit-matches-balances` | an account whose cash or positions differ from the sum of its audit rows | none automatic: reported |
//!
//! Every finding is written to `reconciliation_log` with what was done. The cross-service
//! invariant (ledger total = sum of trade fees) needs both schemas: `wharf reconcile` checks it.

use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;
use wharf_proto::wharf::trading::v1::TradeExecuted;

/// One thing reconciliation found, and what it did about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub invariant: &'static str,
    pub subject: String,
    /// `repaired` or `reported`.
    pub action: &'static str,
    pub detail: String,
}

pub const ORDER_SETTLES: &str = "order-settles";
pub const AUDIT_MATCHES_BALANCES: &str = "audit-matches-balances";

#[derive(sqlx::FromRow)]
struct Stuck {
    order_id: Uuid,
    account_id: Uuid,
    user_id: String,
    currency: String,
    trade_id: Uuid,
    instrument: String,
    side: String,
    quantity: i64,
    price_minor: i64,
    notional_minor: i64,
    fee_minor: i64,
    executed_at: sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc>,
}

/// Runs every trading invariant once; repairs what it can and logs everything it found.
pub async fn run(pool: &PgPool, settle_after: Duration) -> Result<Vec<Finding>, sqlx::Error> {
    let mut findings = redrive_unsettled(pool, settle_after).await?;
    findings.extend(audit_against_balances(pool).await?);
    for finding in &findings {
        sqlx::query(
            "INSERT INTO reconciliation_log (invariant, subject, action, detail) VALUES ($1, $2, $3, $4)",
        )
        .bind(finding.invariant)
        .bind(&finding.subject)
        .bind(finding.action)
        .bind(&finding.detail)
        .execute(pool)
        .await?;
        tracing::warn!(
            invariant = finding.invariant,
            subject = %finding.subject,
            action = finding.action,
            detail = %finding.detail,
            "reconciliation finding"
        );
    }
    Ok(findings)
}

/// Orders FILLED for longer than `settle_after` (and not re-driven within that time): their
/// trade event is emitted again, in one transaction per order.
async fn redrive_unsettled(
    pool: &PgPool,
    settle_after: Duration,
) -> Result<Vec<Finding>, sqlx::Error> {
    let seconds = settle_after.as_secs_f64();
    let stuck: Vec<Stuck> = sqlx::query_as(
        "SELECT o.id AS order_id, o.account_id, a.user_id, a.currency, t.id AS trade_id, \
                t.instrument, t.side, t.quantity, t.price_minor, t.notional_minor, t.fee_minor, t.executed_at \
         FROM orders o JOIN trades t ON t.order_id = o.id JOIN accounts a ON a.id = o.account_id \
         WHERE o.state = 'FILLED' AND o.updated_at < now() - make_interval(secs => $1) \
           AND NOT EXISTS (SELECT 1 FROM reconciliation_log l \
                           WHERE l.invariant = 'order-settles' AND l.subject = o.id::text \
                             AND l.at > now() - make_interval(secs => $1)) \
         ORDER BY o.updated_at LIMIT 1000",
    )
    .bind(seconds)
    .fetch_all(pool)
    .await?;
    let mut findings = Vec::with_capacity(stuck.len());
    for order in stuck {
        let event_id = Uuid::now_v7();
        let mut tx = pool.begin().await?;
        let side = match order.side.as_str() {
            "BUY" => wharf_proto::wharf::trading::v1::Side::Buy,
            _ => wharf_proto::wharf::trading::v1::Side::Sell,
        };
        wharf_outbox::enqueue(
            &mut tx,
            TradeExecuted {
                event_id: event_id.to_string(),
                // The trade's own time, so revenue dates a re-driven trade correctly.
                occurred_at: Some(crate::store::timestamp(order.executed_at)),
                account_id: order.account_id.to_string(),
                order_id: order.order_id.to_string(),
                trade_id: order.trade_id.to_string(),
                user_id: order.user_id,
                instrument: order.instrument,
                side: side.into(),
                quantity: order.quantity,
                price_minor: order.price_minor,
                notional_minor: order.notional_minor,
                fee_minor: order.fee_minor,
                currency: order.currency,
            },
        )
        .await
        .map_err(|err| match err {
            wharf_outbox::OutboxError::Database(db) => db,
            other => sqlx::Error::Protocol(other.to_string()),
        })?;
        tx.commit().await?;
        wharf_outbox::wake::notify(pool).await;
        findings.push(Finding {
            invariant: ORDER_SETTLES,
            subject: order.order_id.to_string(),
            action: "repaired",
            detail: format!(
                "FILLED for over {}s without settling; trade {} re-emitted as event {event_id}",
                settle_after.as_secs(),
                order.trade_id
            ),
        });
    }
    Ok(findings)
}

/// Accounts whose cash or positions are not the sum of their audit rows.
async fn audit_against_balances(pool: &PgPool) -> Result<Vec<Finding>, sqlx::Error> {
    let cash: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT a.id, a.cash_minor, COALESCE(SUM(au.cash_delta), 0)::bigint \
         FROM accounts a LEFT JOIN audit au ON au.account_id = a.id \
         GROUP BY a.id HAVING a.cash_minor <> COALESCE(SUM(au.cash_delta), 0)",
    )
    .fetch_all(pool)
    .await?;
    let positions: Vec<(Uuid, String, i64, i64)> = sqlx::query_as(
        "SELECT p.account_id, p.instrument, p.quantity, COALESCE(SUM(au.quantity_delta), 0)::bigint \
         FROM positions p LEFT JOIN audit au \
           ON au.account_id = p.account_id AND au.instrument = p.instrument \
         GROUP BY p.account_id, p.instrument, p.quantity \
         HAVING p.quantity <> COALESCE(SUM(au.quantity_delta), 0)",
    )
    .fetch_all(pool)
    .await?;
    let mut findings = Vec::new();
    for (account, balance, audited) in cash {
        findings.push(Finding {
            invariant: AUDIT_MATCHES_BALANCES,
            subject: account.to_string(),
            action: "reported",
            detail: format!("cash is {balance}, audit rows sum to {audited}"),
        });
    }
    for (account, instrument, quantity, audited) in positions {
        findings.push(Finding {
            invariant: AUDIT_MATCHES_BALANCES,
            subject: format!("{account}/{instrument}"),
            action: "reported",
            detail: format!("position is {quantity}, audit rows sum to {audited}"),
        });
    }
    Ok(findings)
}

/// Prints findings as a table (an operator reads it at 3 a.m.).
pub fn table(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no findings: every invariant holds\n".to_owned();
    }
    let mut out = format!(
        "{:<24} {:<44} {:<9} {}\n",
        "INVARIANT", "SUBJECT", "ACTION", "DETAIL"
    );
    for finding in findings {
        out.push_str(&format!(
            "{:<24} {:<44} {:<9} {}\n",
            finding.invariant, finding.subject, finding.action, finding.detail
        ));
    }
    out
}

/// A trade as reconciliation compares it with the ledger.
pub async fn trade_fees(pool: &PgPool) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT id, fee_minor FROM trades")
        .fetch_all(pool)
        .await
}
