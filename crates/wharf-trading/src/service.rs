//! `wharf.trading.v1.TradingService`: the RPC handlers.
//!
//! Every call is authenticated with the token layer; a caller sees only their own account,
//! orders and trades. `SetPrice` needs the `admin` role.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use uuid::Uuid;
use wharf_outbox::Waker;
use wharf_proto::wharf::trading::v1::trading_service_server::{
    TradingService, TradingServiceServer,
};
use wharf_proto::wharf::trading::v1::{
    DepositRequest, DepositResponse, GetAccountRequest, GetAccountResponse, GetOrderRequest,
    GetOrderResponse, Instrument, ListInstrumentsRequest, ListInstrumentsResponse,
    ListOrdersRequest, ListOrdersResponse, ListTradesRequest, ListTradesResponse, Order,
    PlaceOrderRequest, PlaceOrderResponse, Position, SetPriceRequest, SetPriceResponse, Side,
    TradeExecuted, WithdrawRequest, WithdrawResponse,
};
use wharf_tokens::layer::verify_bearer;
use wharf_tokens::{Identity, Tokens};

use crate::config::TradingConfig;
use crate::store::{self, Cursor};

/// The role `SetPrice` needs.
pub const ADMIN: &str = "admin";
const MAX_KEY: usize = 200;
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

#[derive(Clone)]
pub struct TradingHandlers {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    tokens: Arc<Tokens>,
    /// Wakes the relay once an order (and its `trade.executed` event) has committed.
    outbox: Waker,
    config: TradingConfig,
}

impl std::fmt::Debug for TradingHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TradingHandlers").finish_non_exhaustive()
    }
}

impl TradingHandlers {
    pub fn new(pool: PgPool, tokens: Arc<Tokens>, outbox: Waker, config: TradingConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                tokens,
                outbox,
                config,
            }),
        }
    }

    pub fn server(self) -> TradingServiceServer<Self> {
        TradingServiceServer::new(self)
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Identity, Status> {
        verify_bearer(&self.inner.tokens, request.metadata())
    }

    /// The caller's account (created on first use), and the connection that read it.
    async fn own_account(
        &self,
        identity: &Identity,
    ) -> Result<(sqlx::pool::PoolConnection<sqlx::Postgres>, store::Account), Status> {
        let mut conn = self.inner.pool.acquire().await.map_err(|e| database(&e))?;
        let account = store::account(
            &mut conn,
            &identity.user_id,
            &self.inner.config.currency,
            false,
        )
        .await
        .map_err(|e| database(&e))?;
        Ok((conn, account))
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

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

/// A database failure as a caller sees it: retryable when the database is unreachable or the
/// transaction lost a serialisation race, internal otherwise. Never the database's words.
pub fn database(err: &sqlx::Error) -> Status {
    if let sqlx::Error::Database(db) = err
        && matches!(db.code().as_deref(), Some("40001" | "40P01"))
    {
        return Status::aborted("the transaction conflicted with another; retry");
    }
    tracing::error!(error = %err, "trading database call failed");
    if wharf_runtime::db::is_unreachable(err) {
        Status::unavailable("the trading store is unavailable; retry later")
    } else {
        Status::internal("internal error")
    }
}

fn precondition(kind: &str, subject: &str, description: String, message: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.add_precondition_failure_violation(kind, subject, description);
    Status::with_error_details(tonic::Code::FailedPrecondition, message, details)
}

fn key_reused() -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(
        "IDEMPOTENCY_KEY_REUSED",
        "wharf.trading.v1",
        std::collections::HashMap::new(),
    );
    Status::with_error_details(
        tonic::Code::FailedPrecondition,
        "this idempotency key was used for a different request",
        details,
    )
}

fn unknown_instrument(symbol: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.set_resource_info("instrument", symbol, "", "no such instrument");
    Status::with_error_details(tonic::Code::NotFound, "unknown instrument", details)
}

fn check_key(key: &str, violations: &mut Vec<(&'static str, String)>) {
    if key.is_empty() || key.len() > MAX_KEY {
        violations.push((
            "idempotency_key",
            format!("is required, 1 to {MAX_KEY} bytes"),
        ));
    }
}

fn fingerprint(parts: &[&str]) -> Vec<u8> {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize().to_vec()
}

fn page(size: i32, token: &str) -> Result<(i64, Option<Cursor>), Status> {
    let mut violations = Vec::new();
    let size = match i64::from(size) {
        0 => DEFAULT_PAGE,
        n if (1..=MAX_PAGE).contains(&n) => n,
        _ => {
            violations.push(("page_size", format!("must be 0 (default) to {MAX_PAGE}")));
            DEFAULT_PAGE
        }
    };
    let cursor = if token.is_empty() {
        None
    } else {
        let cursor = Cursor::decode(token);
        if cursor.is_none() {
            violations.push((
                "page_token",
                "is not a token this service issued".to_owned(),
            ));
        }
        cursor
    };
    if violations.is_empty() {
        Ok((size, cursor))
    } else {
        Err(invalid("list", violations))
    }
}

/// Cuts `rows` (fetched with one extra) to `size` and returns the token of the next page, or
/// an empty one on the last.
fn next_page<T>(rows: &mut Vec<T>, size: i64, cursor: impl Fn(&T) -> Cursor) -> String {
    if rows.len() > usize::try_from(size).unwrap_or(usize::MAX) {
        rows.pop();
        rows.last()
            .map(|row| cursor(row).encode())
            .unwrap_or_default()
    } else {
        String::new()
    }
}

fn valid_symbol(symbol: &str) -> bool {
    (1..=12).contains(&symbol.len())
        && symbol
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

// ---------------------------------------------------------------------------------------------
// Cash.

#[derive(Clone, Copy, PartialEq, Eq)]
enum CashKind {
    Deposit,
    Withdraw,
}

impl TradingHandlers {
    async fn cash(
        &self,
        identity: &Identity,
        kind: CashKind,
        key: &str,
        amount: i64,
    ) -> Result<i64, Status> {
        let config = &self.inner.config;
        let mut violations = Vec::new();
        check_key(key, &mut violations);
        if amount <= 0 || amount > config.max_cash_request_minor {
            violations.push((
                "amount_minor",
                format!("must be 1 to {} minor units", config.max_cash_request_minor),
            ));
        }
        let what = match kind {
            CashKind::Deposit => "deposit",
            CashKind::Withdraw => "withdraw",
        };
        if !violations.is_empty() {
            return Err(invalid(what, violations));
        }
        let print = fingerprint(&[what, &amount.to_string()]);
        let mut tx = self.inner.pool.begin().await.map_err(|e| database(&e))?;
        let account = store::account(&mut tx, &identity.user_id, &config.currency, true)
            .await
            .map_err(|e| database(&e))?;
        let prior: Option<(Vec<u8>, i64)> = sqlx::query_as(
            "SELECT fingerprint, cash_after FROM cash_requests WHERE account_id = $1 AND idempotency_key = $2",
        )
        .bind(account.id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| database(&e))?;
        if let Some((prior_print, cash_after)) = prior {
            return if prior_print == print {
                Ok(cash_after)
            } else {
                Err(key_reused())
            };
        }
        let delta = match kind {
            CashKind::Deposit => amount,
            CashKind::Withdraw => {
                if account.cash_minor < amount {
                    return Err(precondition(
                        "INSUFFICIENT_FUNDS",
                        "cash",
                        format!(
                            "withdrawing {amount} needs that much cash; the account has {}",
                            account.cash_minor
                        ),
                        "insufficient funds",
                    ));
                }
                -amount
            }
        };
        let cash_after = account
            .cash_minor
            .checked_add(delta)
            .ok_or_else(|| invalid(what, vec![("amount_minor", "is too large".to_owned())]))?;
        sqlx::query("UPDATE accounts SET cash_minor = $2, updated_at = now() WHERE id = $1")
            .bind(account.id)
            .bind(cash_after)
            .execute(&mut *tx)
            .await
            .map_err(|e| database(&e))?;
        sqlx::query(
            "INSERT INTO audit (account_id, operation, cash_delta, reference_id) VALUES ($1, $2, $3, $4)",
        )
        .bind(account.id)
        .bind(what.to_uppercase())
        .bind(delta)
        .bind(format!("cash:{key}"))
        .execute(&mut *tx)
        .await
        .map_err(|e| database(&e))?;
        sqlx::query(
            "INSERT INTO cash_requests (account_id, idempotency_key, fingerprint, cash_after) VALUES ($1, $2, $3, $4)",
        )
        .bind(account.id)
        .bind(key)
        .bind(&print)
        .bind(cash_after)
        .execute(&mut *tx)
        .await
        .map_err(|e| database(&e))?;
        tx.commit().await.map_err(|e| database(&e))?;
        Ok(cash_after)
    }
}

// ---------------------------------------------------------------------------------------------
// Orders.

/// A validated market order.
#[derive(Debug, Clone, Copy)]
pub struct OrderRequest<'a> {
    pub key: &'a str,
    pub instrument: &'a str,
    pub side: Side,
    pub side_name: &'static str,
    pub quantity: i64,
}

impl TradingHandlers {
    /// The whole order in one transaction: lock the account, check funds or position, write
    /// the order (NEW → FILLED), the trade, the balance and position changes, their audit rows
    /// and the `trading.trade.executed` outbox row. Any refusal writes nothing.
    ///
    /// `PlaceOrder` calls it after authentication and validation; the benchmark calls it
    /// directly, as the same transaction without gRPC.
    pub async fn place(
        &self,
        identity: &Identity,
        order: &OrderRequest<'_>,
    ) -> Result<Order, Status> {
        let config = &self.inner.config;
        let print = fingerprint(&[
            order.instrument,
            order.side_name,
            &order.quantity.to_string(),
        ]);
        let mut tx = self.inner.pool.begin().await.map_err(|e| database(&e))?;
        let account = store::account(&mut tx, &identity.user_id, &config.currency, true)
            .await
            .map_err(|e| database(&e))?;
        if let Some(prior) = store::order_by_key(&mut tx, account.id, order.key)
            .await
            .map_err(|e| database(&e))?
        {
            if prior.fingerprint != print {
                return Err(key_reused());
            }
            let mut orders = store::orders_with_history(&mut tx, vec![prior])
                .await
                .map_err(|e| database(&e))?;
            return orders
                .pop()
                .ok_or_else(|| Status::internal("internal error"));
        }
        let price: Option<(i64,)> =
            sqlx::query_as("SELECT price_minor FROM instruments WHERE symbol = $1")
                .bind(order.instrument)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| database(&e))?;
        let Some((price,)) = price else {
            return Err(unknown_instrument(order.instrument));
        };
        let notional = order.quantity.checked_mul(price).ok_or_else(|| {
            invalid(
                "order",
                vec![("quantity", "quantity × price is too large".to_owned())],
            )
        })?;
        let fee = config.fee(notional);
        let held: Option<(i64,)> = sqlx::query_as(
            "SELECT quantity FROM positions WHERE account_id = $1 AND instrument = $2",
        )
        .bind(account.id)
        .bind(order.instrument)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| database(&e))?;
        let held = held.map_or(0, |(quantity,)| quantity);
        let (cash_delta, quantity_delta) = match order.side {
            Side::Buy => {
                let needed = notional.saturating_add(fee);
                if account.cash_minor < needed {
                    return Err(precondition(
                        "INSUFFICIENT_FUNDS",
                        "cash",
                        format!(
                            "buying {} {} at {price} needs {needed} with the fee; the account has {}",
                            order.quantity, order.instrument, account.cash_minor
                        ),
                        "insufficient funds",
                    ));
                }
                (-notional, order.quantity)
            }
            _ => {
                if held < order.quantity {
                    return Err(precondition(
                        "INSUFFICIENT_POSITION",
                        "position",
                        format!(
                            "selling {} {} needs that many; the account holds {held}",
                            order.quantity, order.instrument
                        ),
                        "insufficient position",
                    ));
                }
                (notional, -order.quantity)
            }
        };
        let cash_after = account
            .cash_minor
            .checked_add(cash_delta)
            .and_then(|cash| cash.checked_sub(fee))
            .filter(|cash| *cash >= 0)
            .ok_or_else(|| {
                precondition(
                    "INSUFFICIENT_FUNDS",
                    "cash",
                    format!("the fee of {fee} exceeds the account's cash"),
                    "insufficient funds",
                )
            })?;

        let order_id = Uuid::now_v7();
        let trade_id = Uuid::now_v7();
        let event_id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO orders (id, account_id, instrument, side, quantity, state, price_minor, fee_minor, idempotency_key, fingerprint) \
             VALUES ($1, $2, $3, $4, $5, 'NEW', $6, $7, $8, $9)",
        )
        .bind(order_id)
        .bind(account.id)
        .bind(order.instrument)
        .bind(order.side_name)
        .bind(order.quantity)
        .bind(price)
        .bind(fee)
        .bind(order.key)
        .bind(&print)
        .execute(&mut *tx)
        .await
        .map_err(|e| database(&e))?;
        sqlx::query("UPDATE orders SET state = 'FILLED' WHERE id = $1")
            .bind(order_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| database(&e))?;
        sqlx::query(
            "INSERT INTO trades (id, order_id, account_id, instrument, side, quantity, price_minor, notional_minor, fee_minor, event_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(trade_id)
        .bind(order_id)
        .bind(account.id)
        .bind(order.instrument)
        .bind(order.side_name)
        .bind(order.quantity)
        .bind(price)
        .bind(notional)
        .bind(fee)
        .bind(event_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| database(&e))?;
        sqlx::query("UPDATE accounts SET cash_minor = $2, updated_at = now() WHERE id = $1")
            .bind(account.id)
            .bind(cash_after)
            .execute(&mut *tx)
            .await
            .map_err(|e| database(&e))?;
        // A sell changes a position that exists (checked above); a buy may open one. (An
        // upsert would check the negative delta against `quantity >= 0` before the conflict.)
        let position_sql = if quantity_delta > 0 {
            "INSERT INTO positions (account_id, instrument, quantity) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id, instrument) DO UPDATE SET quantity = positions.quantity + EXCLUDED.quantity"
        } else {
            "UPDATE positions SET quantity = quantity + $3 WHERE account_id = $1 AND instrument = $2"
        };
        sqlx::query(position_sql)
            .bind(account.id)
            .bind(order.instrument)
            .bind(quantity_delta)
            .execute(&mut *tx)
            .await
            .map_err(|e| database(&e))?;
        let reference = trade_id.to_string();
        sqlx::query(
            "INSERT INTO audit (account_id, operation, cash_delta, instrument, quantity_delta, reference_id) \
             VALUES ($1, $2, $3, $4, $5, $6), ($1, 'FEE', $7, NULL, 0, $6)",
        )
        .bind(account.id)
        .bind(order.side_name)
        .bind(cash_delta)
        .bind(order.instrument)
        .bind(quantity_delta)
        .bind(&reference)
        .bind(-fee)
        .execute(&mut *tx)
        .await
        .map_err(|e| database(&e))?;
        wharf_outbox::enqueue(
            &mut tx,
            TradeExecuted {
                event_id: event_id.to_string(),
                occurred_at: None,
                account_id: account.id.to_string(),
                order_id: order_id.to_string(),
                trade_id: reference,
                user_id: identity.user_id.clone(),
                instrument: order.instrument.to_owned(),
                side: order.side.into(),
                quantity: order.quantity,
                price_minor: price,
                notional_minor: notional,
                fee_minor: fee,
                currency: account.currency.clone(),
            },
        )
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "failed to enqueue trading.trade.executed");
            Status::unavailable("the trading store is unavailable; retry later")
        })?;
        let row = store::order_by_key(&mut tx, account.id, order.key)
            .await
            .map_err(|e| database(&e))?
            .ok_or_else(|| Status::internal("internal error"))?;
        let mut orders = store::orders_with_history(&mut tx, vec![row])
            .await
            .map_err(|e| database(&e))?;
        self.inner
            .outbox
            .commit(tx)
            .await
            .map_err(|e| database(&e))?;
        orders
            .pop()
            .ok_or_else(|| Status::internal("internal error"))
    }
}

// ---------------------------------------------------------------------------------------------
// The RPCs.

#[tonic::async_trait]
impl TradingService for TradingHandlers {
    async fn deposit(
        &self,
        request: Request<DepositRequest>,
    ) -> Result<Response<DepositResponse>, Status> {
        let identity = self.caller(&request)?;
        let DepositRequest {
            idempotency_key,
            amount_minor,
        } = request.into_inner();
        let cash_minor = self
            .cash(&identity, CashKind::Deposit, &idempotency_key, amount_minor)
            .await?;
        Ok(Response::new(DepositResponse { cash_minor }))
    }

    async fn withdraw(
        &self,
        request: Request<WithdrawRequest>,
    ) -> Result<Response<WithdrawResponse>, Status> {
        let identity = self.caller(&request)?;
        let WithdrawRequest {
            idempotency_key,
            amount_minor,
        } = request.into_inner();
        let cash_minor = self
            .cash(
                &identity,
                CashKind::Withdraw,
                &idempotency_key,
                amount_minor,
            )
            .await?;
        Ok(Response::new(WithdrawResponse { cash_minor }))
    }

    async fn get_account(
        &self,
        request: Request<GetAccountRequest>,
    ) -> Result<Response<GetAccountResponse>, Status> {
        let identity = self.caller(&request)?;
        let (mut conn, account) = self.own_account(&identity).await?;
        let positions: Vec<(String, i64)> = sqlx::query_as(
            "SELECT instrument, quantity FROM positions WHERE account_id = $1 AND quantity > 0 ORDER BY instrument",
        )
        .bind(account.id)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| database(&e))?;
        Ok(Response::new(GetAccountResponse {
            account_id: account.id.to_string(),
            cash_minor: account.cash_minor,
            currency: account.currency,
            positions: positions
                .into_iter()
                .map(|(instrument, quantity)| Position {
                    instrument,
                    quantity,
                })
                .collect(),
        }))
    }

    async fn list_instruments(
        &self,
        request: Request<ListInstrumentsRequest>,
    ) -> Result<Response<ListInstrumentsResponse>, Status> {
        self.caller(&request)?;
        let rows: Vec<(
            String,
            String,
            i64,
            sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc>,
        )> = sqlx::query_as(
            "SELECT symbol, name, price_minor, price_updated_at FROM instruments ORDER BY symbol",
        )
        .fetch_all(&self.inner.pool)
        .await
        .map_err(|e| database(&e))?;
        Ok(Response::new(ListInstrumentsResponse {
            instruments: rows
                .into_iter()
                .map(|(symbol, name, price_minor, at)| Instrument {
                    symbol,
                    name,
                    price_minor,
                    price_updated_at: Some(store::timestamp(at)),
                })
                .collect(),
        }))
    }

    async fn set_price(
        &self,
        request: Request<SetPriceRequest>,
    ) -> Result<Response<SetPriceResponse>, Status> {
        let identity = self.caller(&request)?;
        if !identity.has_role(ADMIN) {
            return Err(Status::permission_denied("the admin role is required"));
        }
        let SetPriceRequest {
            symbol,
            price_minor,
        } = request.into_inner();
        let mut violations = Vec::new();
        if !valid_symbol(&symbol) {
            violations.push(("symbol", "must be 1 to 12 of A-Z and 0-9".to_owned()));
        }
        if price_minor <= 0 {
            violations.push(("price_minor", "must be positive".to_owned()));
        }
        if !violations.is_empty() {
            return Err(invalid("set price", violations));
        }
        let (symbol, name, price_minor, at): (
            String,
            String,
            i64,
            sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc>,
        ) = sqlx::query_as(
            "INSERT INTO instruments (symbol, name, price_minor) VALUES ($1, $1, $2) \
             ON CONFLICT (symbol) DO UPDATE SET price_minor = EXCLUDED.price_minor, price_updated_at = now() \
             RETURNING symbol, name, price_minor, price_updated_at",
        )
        .bind(&symbol)
        .bind(price_minor)
        .fetch_one(&self.inner.pool)
        .await
        .map_err(|e| database(&e))?;
        tracing::info!(%symbol, price_minor, by = %identity.user_id, "price set");
        Ok(Response::new(SetPriceResponse {
            instrument: Some(Instrument {
                symbol,
                name,
                price_minor,
                price_updated_at: Some(store::timestamp(at)),
            }),
        }))
    }

    async fn place_order(
        &self,
        request: Request<PlaceOrderRequest>,
    ) -> Result<Response<PlaceOrderResponse>, Status> {
        let identity = self.caller(&request)?;
        let PlaceOrderRequest {
            idempotency_key,
            instrument,
            side,
            quantity,
        } = request.into_inner();
        let mut violations = Vec::new();
        check_key(&idempotency_key, &mut violations);
        if !valid_symbol(&instrument) {
            violations.push(("instrument", "must be 1 to 12 of A-Z and 0-9".to_owned()));
        }
        let side = Side::try_from(side).unwrap_or(Side::Unspecified);
        let side_name = store::side_name(side);
        if side_name.is_none() {
            violations.push(("side", "must be SIDE_BUY or SIDE_SELL".to_owned()));
        }
        let max = self.inner.config.max_quantity;
        if quantity <= 0 || quantity > max {
            violations.push(("quantity", format!("must be 1 to {max}")));
        }
        let Some(side_name) = side_name.filter(|_| violations.is_empty()) else {
            return Err(invalid("order", violations));
        };
        let order = self
            .place(
                &identity,
                &OrderRequest {
                    key: &idempotency_key,
                    instrument: &instrument,
                    side,
                    side_name,
                    quantity,
                },
            )
            .await?;
        Ok(Response::new(PlaceOrderResponse { order: Some(order) }))
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<GetOrderResponse>, Status> {
        let identity = self.caller(&request)?;
        let Ok(order_id) = Uuid::parse_str(&request.get_ref().order_id) else {
            return Err(invalid(
                "get order",
                vec![("order_id", "must be a UUID".to_owned())],
            ));
        };
        let (mut conn, account) = self.own_account(&identity).await?;
        // Another user's order is as absent as one that does not exist.
        let row = store::order_by_id(&self.inner.pool, account.id, order_id)
            .await
            .map_err(|e| database(&e))?
            .ok_or_else(|| Status::not_found("no such order"))?;
        let order = store::orders_with_history(&mut conn, vec![row])
            .await
            .map_err(|e| database(&e))?
            .pop();
        Ok(Response::new(GetOrderResponse { order }))
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let identity = self.caller(&request)?;
        let (size, cursor) = page(request.get_ref().page_size, &request.get_ref().page_token)?;
        let (mut conn, account) = self.own_account(&identity).await?;
        let mut rows = store::orders_page(&self.inner.pool, account.id, cursor.as_ref(), size + 1)
            .await
            .map_err(|e| database(&e))?;
        let next_page_token = next_page(&mut rows, size, |row| Cursor {
            at: row.created_at,
            id: row.id,
        });
        let orders = store::orders_with_history(&mut conn, rows)
            .await
            .map_err(|e| database(&e))?;
        Ok(Response::new(ListOrdersResponse {
            orders,
            next_page_token,
        }))
    }

    async fn list_trades(
        &self,
        request: Request<ListTradesRequest>,
    ) -> Result<Response<ListTradesResponse>, Status> {
        let identity = self.caller(&request)?;
        let (size, cursor) = page(request.get_ref().page_size, &request.get_ref().page_token)?;
        let (_, account) = self.own_account(&identity).await?;
        let mut rows = store::trades_page(&self.inner.pool, account.id, cursor.as_ref(), size + 1)
            .await
            .map_err(|e| database(&e))?;
        let next_page_token = next_page(&mut rows, size, |row| Cursor {
            at: row.executed_at,
            id: row.id,
        });
        Ok(Response::new(ListTradesResponse {
            trades: rows.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }
}
