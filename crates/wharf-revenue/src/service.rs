//! `wharf.revenue.v1.RevenueService`: the admin reports over the ledger.
//!
//! Every call needs an access token with the `admin` role. The check runs first in each
//! handler, with the token layer's `verify_bearer` and `require_role` (the runtime's server
//! builder takes generated servers, so the check cannot be an interceptor around one): a
//! missing or bad token is `UNAUTHENTICATED` with the one generic message, a valid token
//! without the role `PERMISSION_DENIED`. Only then is the request validated.

use std::sync::Arc;

use prost_types::Timestamp;
use sqlx::PgPool;
use sqlx::types::chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use wharf_proto::wharf::revenue::v1::revenue_service_server::{
    RevenueService, RevenueServiceServer,
};
use wharf_proto::wharf::revenue::v1::{
    GetRevenueRequest, GetRevenueResponse, LedgerEntry, ListLedgerEntriesRequest,
    ListLedgerEntriesResponse, RevenueBucket,
};
use wharf_tokens::layer::{require_role, verify_bearer};
use wharf_tokens::{Identity, Tokens};

use crate::consumer::{MAX_INSTRUMENT, is_instrument};
use crate::ledger::{self, Cursor, Entry, ReportFilter};
use crate::page;

/// The role every revenue RPC requires.
pub const ADMIN_ROLE: &str = "admin";
/// Entries per page when the caller names no size.
pub const DEFAULT_PAGE_SIZE: i32 = 50;
/// The largest page a caller may ask for.
pub const MAX_PAGE_SIZE: i32 = 500;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct RevenueHandlers {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    tokens: Arc<Tokens>,
    currency: String,
}

impl std::fmt::Debug for RevenueHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevenueHandlers")
            .field("currency", &self.inner.currency)
            .finish_non_exhaustive()
    }
}

impl RevenueHandlers {
    /// Handlers over the ledger in `pool`, verifying callers with `tokens`, reporting in
    /// `currency` (the ledger's).
    pub fn new(pool: PgPool, tokens: Arc<Tokens>, currency: String) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                tokens,
                currency,
            }),
        }
    }

    pub fn server(self) -> RevenueServiceServer<Self> {
        RevenueServiceServer::new(self)
    }

    /// The caller, verified, who must hold the admin role.
    fn admin<T>(&self, request: &mut Request<T>) -> Result<Identity, Status> {
        let identity = verify_bearer(&self.inner.tokens, request.metadata())?;
        request.extensions_mut().insert(identity);
        require_role(request, ADMIN_ROLE).cloned()
    }
}

// ---------------------------------------------------------------------------------------------
// Errors as callers see them.

fn invalid(what: &str, violations: Vec<(&'static str, String)>) -> Status {
    let mut details = ErrorDetails::new();
    for (field, description) in violations {
        details.add_bad_request_violation(field, description);
    }
    Status::with_error_details(
        tonic::Code::InvalidArgument,
        format!("invalid {what} request"),
        details,
    )
}

fn database(err: &sqlx::Error) -> Status {
    tracing::error!(error = %err, "revenue database call failed");
    if wharf_runtime::db::is_unreachable(err) {
        Status::unavailable("the ledger is unavailable; retry later")
    } else {
        Status::internal("internal error")
    }
}

fn internal(reason: &str) -> Status {
    tracing::error!(%reason, "revenue report failed");
    Status::internal("internal error")
}

fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range of `google.protobuf.Timestamp`
/// (well inside PostgreSQL's), for request times and page tokens alike.
pub(crate) const MIN_SECONDS: i64 = -62_135_596_800;
pub(crate) const MAX_SECONDS: i64 = 253_402_300_799;

/// A request timestamp the ledger can compare with, or what is wrong with it.
fn instant(at: Timestamp) -> Result<DateTime<Utc>, String> {
    let nanos = u32::try_from(at.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .ok_or_else(|| "nanos must be 0 to 999999999".to_owned())?;
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&at.seconds) {
        return Err("must be between the years 0001 and 9999".to_owned());
    }
    DateTime::<Utc>::from_timestamp(at.seconds, nanos)
        .ok_or_else(|| "must be between the years 0001 and 9999".to_owned())
}

fn ledger_entry(entry: Entry) -> LedgerEntry {
    LedgerEntry {
        ledger_entry_id: entry.id.to_string(),
        trade_id: entry.trade_id.to_string(),
        order_id: entry.order_id.to_string(),
        account_id: entry.account_id.to_string(),
        instrument: entry.instrument,
        fee_minor: entry.fee_minor,
        recorded_at: Some(timestamp(entry.recorded_at)),
        event_id: entry.event_id.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Validation.

impl TryFrom<GetRevenueRequest> for ReportFilter {
    type Error = Status;

    fn try_from(request: GetRevenueRequest) -> Result<Self, Status> {
        let mut violations = Vec::new();
        let mut bound = |field: &'static str, at: Option<Timestamp>| match at.map(instant) {
            None => None,
            Some(Ok(at)) => Some(at),
            Some(Err(problem)) => {
                violations.push((field, problem));
                None
            }
        };
        let from = bound("from", request.from);
        let to = bound("to", request.to);
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            violations.push(("to", "must be later than from".to_owned()));
        }
        let instrument = request.instrument.trim();
        if !instrument.is_empty() && !is_instrument(instrument) {
            violations.push((
                "instrument",
                format!("must be 1 to {MAX_INSTRUMENT} visible ASCII characters, e.g. WHRF"),
            ));
        }
        if !violations.is_empty() {
            return Err(invalid("revenue", violations));
        }
        Ok(Self {
            from,
            to,
            instrument: (!instrument.is_empty()).then(|| instrument.to_owned()),
        })
    }
}

/// A list request that passed validation.
struct ValidPage {
    size: i64,
    after: Option<Cursor>,
}

impl ValidPage {
    fn parse(request: &ListLedgerEntriesRequest) -> Result<Self, Status> {
        let mut violations = Vec::new();
        let size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if (1..=MAX_PAGE_SIZE).contains(&size) => size,
            _ => {
                violations.push((
                    "page_size",
                    format!("must be 1 to {MAX_PAGE_SIZE}, or 0 for {DEFAULT_PAGE_SIZE}"),
                ));
                DEFAULT_PAGE_SIZE
            }
        };
        let after = if request.page_token.is_empty() {
            None
        } else {
            let cursor = page::decode(&request.page_token);
            if cursor.is_none() {
                violations.push((
                    "page_token",
                    "must be a next_page_token from an earlier response".to_owned(),
                ));
            }
            cursor
        };
        if !violations.is_empty() {
            return Err(invalid("list ledger entries", violations));
        }
        Ok(Self {
            size: i64::from(size),
            after,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The RPCs.

#[tonic::async_trait]
impl RevenueService for RevenueHandlers {
    /// Fees and trade counts by UTC day of execution and instrument, with their total.
    async fn get_revenue(
        &self,
        mut request: Request<GetRevenueRequest>,
    ) -> Result<Response<GetRevenueResponse>, Status> {
        self.admin(&mut request)?;
        let filter = ReportFilter::try_from(request.into_inner())?;
        let rows = ledger::report(&self.inner.pool, &filter)
            .await
            .map_err(|err| database(&err))?;
        let currency = &self.inner.currency;
        let mut total: i64 = 0;
        let mut buckets = Vec::with_capacity(rows.len());
        for row in rows {
            // The consumer admits fees in the ledger's currency only; anything else means
            // the configured currency changed under a ledger that already holds fees.
            if &row.currency != currency {
                return Err(internal(&format!(
                    "the ledger holds fees in {}, but revenue.currency is {currency}",
                    row.currency
                )));
            }
            total = total
                .checked_add(row.fee_minor)
                .ok_or_else(|| internal("the fee total overflows 64 bits"))?;
            buckets.push(RevenueBucket {
                day: row.day,
                instrument: row.instrument,
                fee_minor: row.fee_minor,
                trade_count: row.trade_count,
            });
        }
        Ok(Response::new(GetRevenueResponse {
            buckets,
            total_fee_minor: total,
            currency: currency.clone(),
        }))
    }

    /// The ledger, newest first, a page at a time.
    async fn list_ledger_entries(
        &self,
        mut request: Request<ListLedgerEntriesRequest>,
    ) -> Result<Response<ListLedgerEntriesResponse>, Status> {
        self.admin(&mut request)?;
        let page = ValidPage::parse(request.get_ref())?;
        // One more than asked: whether it exists says whether there is a next page.
        let mut entries = ledger::newest_first(&self.inner.pool, page.after, page.size + 1)
            .await
            .map_err(|err| database(&err))?;
        let more = entries.len() > usize::try_from(page.size).unwrap_or(usize::MAX);
        entries.truncate(usize::try_from(page.size).unwrap_or(usize::MAX));
        let next_page_token = match entries.last() {
            Some(last) if more => page::encode(&Cursor {
                recorded_at: last.recorded_at,
                id: last.id,
            }),
            _ => String::new(),
        };
        Ok(Response::new(ListLedgerEntriesResponse {
            entries: entries.into_iter().map(ledger_entry).collect(),
            next_page_token,
        }))
    }
}
