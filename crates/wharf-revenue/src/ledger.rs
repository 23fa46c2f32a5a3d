//! The `revenue` schema: the append-only fee ledger and the queries behind the reports.

use sqlx::types::chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};
use uuid::Uuid;

/// One ledger entry, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Entry {
    pub id: Uuid,
    /// The trade event that produced the entry (the first to arrive, for a re-driven trade).
    pub event_id: Uuid,
    pub trade_id: Uuid,
    pub order_id: Uuid,
    pub account_id: Uuid,
    pub user_id: String,
    pub instrument: String,
    pub fee_minor: i64,
    pub currency: String,
    pub trade_executed_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

/// An entry to write; `recorded_at` is the database's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub id: Uuid,
    pub event_id: Uuid,
    pub trade_id: Uuid,
    pub order_id: Uuid,
    pub account_id: Uuid,
    pub user_id: String,
    pub instrument: String,
    pub fee_minor: i64,
    pub currency: String,
    pub trade_executed_at: DateTime<Utc>,
}

impl NewEntry {
    /// Whether `entry` records the same trade with the same money: what a re-driven trade
    /// event must agree on with the entry it finds. (The event id and the execution time may
    /// differ: a re-drive is a new event.)
    pub fn agrees_with(&self, entry: &Entry) -> bool {
        self.trade_id == entry.trade_id
            && self.order_id == entry.order_id
            && self.account_id == entry.account_id
            && self.instrument == entry.instrument
            && self.fee_minor == entry.fee_minor
            && self.currency == entry.currency
    }
}

/// What [`record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The trade is new: this entry was written.
    New(Entry),
    /// The trade already had this entry (a re-driven trade); nothing was written.
    Existing(Entry),
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The event id already produced an entry for another trade: the event contradicts the
    /// ledger and can never apply.
    #[error("event {event_id} already recorded another trade")]
    EventIdTaken { event_id: Uuid },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The columns of an [`Entry`], as a literal for `concat!` (statements stay `&'static str`).
macro_rules! columns {
    () => {
        "id, event_id, trade_id, order_id, account_id, user_id, instrument, fee_minor, \
         currency, trade_executed_at, recorded_at"
    };
}

/// Writes the entry of a trade, once: a trade that already has an entry keeps it.
///
/// Never fails on a duplicate (so it is safe behind a savepoint in a batched consumer
/// transaction): `ON CONFLICT DO NOTHING`, then the existing entry is read. A concurrent
/// transaction writing the same trade makes this one wait for its outcome, and the read (a
/// new snapshot under READ COMMITTED) then sees its entry.
pub async fn record(
    tx: &mut Transaction<'_, Postgres>,
    entry: &NewEntry,
) -> Result<Recorded, RecordError> {
    let inserted: Option<Entry> = sqlx::query_as(concat!(
        "INSERT INTO ledger_entries (id, event_id, trade_id, order_id, account_id, user_id, \
             instrument, fee_minor, currency, trade_executed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT DO NOTHING \
         RETURNING ",
        columns!()
    ))
    .bind(entry.id)
    .bind(entry.event_id)
    .bind(entry.trade_id)
    .bind(entry.order_id)
    .bind(entry.account_id)
    .bind(&entry.user_id)
    .bind(&entry.instrument)
    .bind(entry.fee_minor)
    .bind(&entry.currency)
    .bind(entry.trade_executed_at)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(inserted) = inserted {
        return Ok(Recorded::New(inserted));
    }
    match by_trade(&mut **tx, entry.trade_id).await? {
        Some(existing) => Ok(Recorded::Existing(existing)),
        // The conflict was not on the trade, so it was on the event id.
        None => Err(RecordError::EventIdTaken {
            event_id: entry.event_id,
        }),
    }
}

/// The entry of a trade, if the ledger has one (reconciliation asks this too).
pub async fn by_trade<'e>(
    executor: impl PgExecutor<'e>,
    trade_id: Uuid,
) -> Result<Option<Entry>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM ledger_entries WHERE trade_id = $1"
    ))
    .bind(trade_id)
    .fetch_optional(executor)
    .await
}

/// Where a page of the newest-first listing ends: the last entry shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub recorded_at: DateTime<Utc>,
    pub id: Uuid,
}

/// Up to `limit` entries, newest first, strictly after `after` in that order. Keyset
/// pagination: a page costs the same however deep it is, and entries written meanwhile
/// (always newer) never shift later pages.
pub async fn newest_first(
    pool: &PgPool,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Vec<Entry>, sqlx::Error> {
    match after {
        None => {
            sqlx::query_as(concat!(
                "SELECT ",
                columns!(),
                " FROM ledger_entries ORDER BY recorded_at DESC, id DESC LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(pool)
            .await
        }
        Some(cursor) => {
            sqlx::query_as(concat!(
                "SELECT ",
                columns!(),
                " FROM ledger_entries WHERE (recorded_at, id) < ($1, $2) \
                 ORDER BY recorded_at DESC, id DESC LIMIT $3"
            ))
            .bind(cursor.recorded_at)
            .bind(cursor.id)
            .bind(limit)
            .fetch_all(pool)
            .await
        }
    }
}

/// What a revenue report covers: execution times in `[from, to)`, optionally one instrument.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub instrument: Option<String>,
}

/// Fees and trades of one UTC day, instrument and currency.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Bucket {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub instrument: String,
    pub currency: String,
    pub fee_minor: i64,
    pub trade_count: i64,
}

/// The report's buckets, by day then instrument.
pub async fn report(pool: &PgPool, filter: &ReportFilter) -> Result<Vec<Bucket>, sqlx::Error> {
    sqlx::query_as(
        "SELECT to_char((trade_executed_at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS day, \
                instrument, currency, \
                sum(fee_minor)::bigint AS fee_minor, count(*) AS trade_count \
         FROM ledger_entries \
         WHERE ($1::timestamptz IS NULL OR trade_executed_at >= $1) \
           AND ($2::timestamptz IS NULL OR trade_executed_at < $2) \
           AND ($3::text IS NULL OR instrument = $3) \
         GROUP BY 1, 2, 3 \
         ORDER BY 1, 2, 3",
    )
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.instrument.as_deref())
    .fetch_all(pool)
    .await
}
