//! The `[trading]` section.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TradingConfig {
    /// The fee on every trade, in basis points of its notional (rounded up to a minor unit).
    pub fee_bps: u32,
    /// The currency of every account.
    pub currency: String,
    /// Largest quantity one order may ask for.
    pub max_quantity: i64,
    /// Largest single deposit or withdrawal, in minor units.
    pub max_cash_request_minor: i64,
    /// Run the outbox relay for the trading schema inside the service.
    pub relay: bool,
    /// Settlement events (`revenue.fee.recorded`) handled at once.
    pub settle_concurrency: usize,
    pub reconcile: ReconcileConfig,
}

impl Default for TradingConfig {
    fn default() -> Self {
        Self {
            fee_bps: 10,
            currency: "USD".to_owned(),
            max_quantity: 1_000_000_000,
            max_cash_request_minor: 1_000_000_000_000,
            relay: true,
            settle_concurrency: 16,
            reconcile: ReconcileConfig::default(),
        }
    }
}

/// Periodic reconciliation inside the service (`wharf reconcile` runs the same checks, and the
/// cross-service ones, on demand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcileConfig {
    /// How often; `0s` turns the periodic run off.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// An order FILLED for longer than this without settling is re-driven (its trade event is
    /// emitted again under a new event id; revenue applies a trade once whatever the event).
    #[serde(with = "humantime_serde")]
    pub settle_after: Duration,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            settle_after: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TradingConfigError {
    #[error("trading.fee_bps must be at most 10000 (100%), got {0}")]
    FeeTooHigh(u32),
    #[error("trading.currency must be a three-letter code, got {0:?}")]
    BadCurrency(String),
    #[error("trading.max_quantity and trading.max_cash_request_minor must be positive")]
    BadBounds,
}

impl TradingConfig {
    pub fn validate(&self) -> Result<(), TradingConfigError> {
        if self.fee_bps > 10_000 {
            return Err(TradingConfigError::FeeTooHigh(self.fee_bps));
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(TradingConfigError::BadCurrency(self.currency.clone()));
        }
        if self.max_quantity <= 0 || self.max_cash_request_minor <= 0 {
            return Err(TradingConfigError::BadBounds);
        }
        Ok(())
    }

    /// The fee of a trade of `notional`: `fee_bps` of it, rounded up.
    pub fn fee(&self, notional: i64) -> i64 {
        let fee = (i128::from(notional) * i128::from(self.fee_bps) + 9_999) / 10_000;
        i64::try_from(fee).unwrap_or(i64::MAX)
    }
}
