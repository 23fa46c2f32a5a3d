//! The revenue service (ARCHITECTURE §4: trade → revenue, the critical path).
//!
//! - **The ledger** is fed by the durable consumer `revenue-ledger` of
//!   `trading.trade.executed`: in the consumer's transaction (which already holds the inbox
//!   row) it writes the trade's ledger entry and enqueues the `OUTBOX` event
//!   `revenue.fee.recorded`, on which trading settles the order. The ledger is append-only,
//!   and a trade is recorded once whatever event carries it: a re-driven trade (the same trade
//!   under a new event id) finds its entry and announces its fee again, writing nothing.
//! - **GetRevenue** reports fees and trade counts by UTC day and instrument;
//!   **ListLedgerEntries** lists entries newest first with keyset page tokens. Both are for
//!   admins only.
//!
//! # Layout
//! - [`app`]: `App::build` + `run_until_stopped`, the schema list.
//! - [`consumer`]: the `revenue-ledger` handler and what makes a trade event valid.
//! - [`ledger`]: the `revenue` schema: writing entries once, the report and listing queries.
//! - [`service`]: the RPC handlers, their authorization and validation.
//! - [`page`]: the opaque page tokens.
//! - [`config`]: the `[revenue]` section.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod consumer;
pub mod ledger;
pub mod page;
pub mod service;

pub use app::{App, AppError, Deps, SCHEMA, schemas};
pub use config::{RevenueConfig, RevenueConfigError};
pub use consumer::{LEDGER_CONSUMER, RecordFee};
pub use service::{ADMIN_ROLE, RevenueHandlers};
