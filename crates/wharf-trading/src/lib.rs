//! The trading service (ARCHITECTURE §4, "Trade → revenue").
//!
//! - `PlaceOrder` is one transaction: lock the account, check funds or position, write the
//!   order (`NEW → FILLED`), the trade, the cash and position changes with an append-only audit
//!   row each, and the `OUTBOX` event `trading.trade.executed` with the full trade and fee.
//!   Retries with the same idempotency key return the first order; another body is refused.
//! - Revenue answers each trade with `revenue.fee.recorded`; [`settle`] moves the order to
//!   `SETTLED`. The database enforces the state machine as firmly as the code.
//! - [`reconcile`] re-drives orders that do not settle and reports audit/balance differences.
//!
//! # Layout
//! - [`app`]: `App::build` + `run_until_stopped`, the schema list.
//! - [`service`]: the RPC handlers.
//! - [`store`]: rows, shared queries, pagination cursors.
//! - [`settle`]: the settlement consumer.
//! - [`reconcile`]: invariants and repairs.
//! - [`config`]: the `[trading]` section.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod reconcile;
pub mod service;
pub mod settle;
pub mod store;

pub use app::{App, AppError, Deps, SCHEMA, schemas};
pub use config::{ReconcileConfig, TradingConfig};
