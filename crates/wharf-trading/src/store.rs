//! Rows of the `trading` schema and the queries more than one handler needs.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost_types::Timestamp;
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use wharf_proto::wharf::trading::v1::{Order, OrderState, OrderTransition, Side, Trade};

pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn side_name(side: Side) -> Option<&'static str> {
    match side {
        Side::Buy => Some("BUY"),
        Side::Sell => Some("SELL"),
        Side::Unspecified => None,
    }
}

fn side_of(raw: &str) -> Side {
    match raw {
        "BUY" => Side::Buy,
        "SELL" => Side::Sell,
        _ => Side::Unspecified,
    }
}

pub fn state_of(raw: &str) -> OrderState {
    match raw {
        "NEW" => OrderState::New,
        "FILLED" => OrderState::Filled,
        "SETTLED" => OrderState::Settled,
        "REJECTED" => OrderState::Rejected,
        _ => OrderState::Unspecified,
    }
}

/// An account, locked for the rest of the transaction.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Account {
    pub id: Uuid,
    pub cash_minor: i64,
    pub currency: String,
}

/// The caller's account, created on first use, locked `FOR UPDATE` when `lock` is set.
pub async fn account(
    conn: &mut PgConnection,
    user_id: &str,
    currency: &str,
    lock: bool,
) -> Result<Account, sqlx::Error> {
    sqlx::query(
        "INSERT INTO accounts (id, user_id, currency) VALUES ($1, $2, $3) ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(user_id)
    .bind(currency)
    .execute(&mut *conn)
    .await?;
    let sql = if lock {
        "SELECT id, cash_minor, currency FROM accounts WHERE user_id = $1 FOR UPDATE"
    } else {
        "SELECT id, cash_minor, currency FROM accounts WHERE user_id = $1"
    };
    sqlx::query_as(sql)
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub instrument: String,
    pub side: String,
    pub quantity: i64,
    pub state: String,
    pub price_minor: i64,
    pub fee_minor: i64,
    pub reject_reason: Option<String>,
    pub fingerprint: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

const ORDER_COLUMNS: &str = "id, account_id, instrument, side, quantity, state, price_minor, \
     fee_minor, reject_reason, fingerprint, created_at";

pub async fn order_by_key(
    conn: &mut PgConnection,
    account_id: Uuid,
    key: &str,
) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE account_id = $1 AND idempotency_key = $2"
    )))
    .bind(account_id)
    .bind(key)
    .fetch_optional(conn)
    .await
}

pub async fn order_by_id(
    pool: &PgPool,
    account_id: Uuid,
    order_id: Uuid,
) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 AND account_id = $2"
    )))
    .bind(order_id)
    .bind(account_id)
    .fetch_optional(pool)
    .await
}

/// One page of the account's orders, newest first, after `cursor`.
pub async fn orders_page(
    pool: &PgPool,
    account_id: Uuid,
    cursor: Option<&Cursor>,
    limit: i64,
) -> Result<Vec<OrderRow>, sqlx::Error> {
    let (at, id) = cursor.map_or((None, None), |c| (Some(c.at), Some(c.id)));
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE account_id = $1 \
         AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) \
         ORDER BY created_at DESC, id DESC LIMIT $4"
    )))
    .bind(account_id)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Orders as the API shows them, each with its history.
pub async fn orders_with_history(
    conn: &mut PgConnection,
    rows: Vec<OrderRow>,
) -> Result<Vec<Order>, sqlx::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let transitions: Vec<(Uuid, Option<String>, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT order_id, from_state, to_state, at FROM order_transitions \
         WHERE order_id = ANY($1) ORDER BY order_id, id",
    )
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    let mut history: HashMap<Uuid, Vec<OrderTransition>> = HashMap::new();
    for (order_id, from, to, at) in transitions {
        history.entry(order_id).or_default().push(OrderTransition {
            from: from
                .as_deref()
                .map_or(OrderState::Unspecified, state_of)
                .into(),
            to: state_of(&to).into(),
            at: Some(timestamp(at)),
        });
    }
    Ok(rows
        .into_iter()
        .map(|row| Order {
            order_id: row.id.to_string(),
            account_id: row.account_id.to_string(),
            instrument: row.instrument,
            side: side_of(&row.side).into(),
            quantity: row.quantity,
            state: state_of(&row.state).into(),
            price_minor: row.price_minor,
            fee_minor: row.fee_minor,
            reject_reason: row.reject_reason.unwrap_or_default(),
            created_at: Some(timestamp(row.created_at)),
            history: history.remove(&row.id).unwrap_or_default(),
        })
        .collect())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TradeRow {
    pub id: Uuid,
    pub order_id: Uuid,
    pub instrument: String,
    pub side: String,
    pub quantity: i64,
    pub price_minor: i64,
    pub fee_minor: i64,
    pub executed_at: DateTime<Utc>,
}

pub async fn trades_page(
    pool: &PgPool,
    account_id: Uuid,
    cursor: Option<&Cursor>,
    limit: i64,
) -> Result<Vec<TradeRow>, sqlx::Error> {
    let (at, id) = cursor.map_or((None, None), |c| (Some(c.at), Some(c.id)));
    sqlx::query_as(
        "SELECT id, order_id, instrument, side, quantity, price_minor, fee_minor, executed_at \
         FROM trades WHERE account_id = $1 \
         AND ($2::timestamptz IS NULL OR (executed_at, id) < ($2, $3)) \
         ORDER BY executed_at DESC, id DESC LIMIT $4",
    )
    .bind(account_id)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

impl From<TradeRow> for Trade {
    fn from(row: TradeRow) -> Self {
        Self {
            trade_id: row.id.to_string(),
            order_id: row.order_id.to_string(),
            instrument: row.instrument,
            side: side_of(&row.side).into(),
            quantity: row.quantity,
            price_minor: row.price_minor,
            fee_minor: row.fee_minor,
            executed_at: Some(timestamp(row.executed_at)),
        }
    }
}

/// Where a page ends: the sort key of its last row. Opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", self.at.timestamp_micros(), self.id))
    }

    pub fn decode(token: &str) -> Option<Self> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
        let (micros, id) = raw.split_once('|')?;
        Some(Self {
            at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: Uuid::parse_str(id).ok()?,
        })
    }
}
