//! The `[revenue]` section.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RevenueConfig {
    /// Trade events the ledger consumer applies at once. Part of the durable consumer's
    /// server-side settings (`max_ack_pending` = this × the batch of 16): every instance and restart of the
    /// service must use the same value, or start-up refuses the contradiction.
    pub consumer_concurrency: usize,
    /// Failed deliveries of a trade event (the database refusing it, say) before it is
    /// dead-lettered. An event that can never apply (a malformed id, a negative fee) is
    /// dead-lettered at once; a database outage never counts.
    pub consumer_max_deliver: u32,
    /// Unacknowledged time after which JetStream redelivers a trade event (a consumer killed
    /// mid-apply). Like the concurrency, fixed on the server for the durable consumer.
    #[serde(with = "humantime_serde")]
    pub consumer_ack_wait: Duration,
    /// The ledger's currency (ISO 4217). Fees in another currency are dead-lettered, never
    /// added to these totals; `GetRevenue` reports in it.
    pub currency: String,
    /// Run the outbox relay for the revenue schema inside the service (`revenue.fee.recorded`
    /// leaves through it). Off when a separate `wharf relay` publishes the schema.
    pub relay: bool,
}

impl Default for RevenueConfig {
    fn default() -> Self {
        Self {
            consumer_concurrency: 16,
            consumer_max_deliver: 5,
            consumer_ack_wait: Duration::from_secs(30),
            currency: "USD".to_owned(),
            relay: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RevenueConfigError {
    #[error("revenue.consumer_concurrency must be 1 to 1024, got {0}")]
    Concurrency(usize),
    #[error("revenue.consumer_max_deliver must be at least 1")]
    MaxDeliver,
    #[error("revenue.consumer_ack_wait must be at least one second, got {0:?}")]
    AckWait(Duration),
    #[error("revenue.currency must be three capital letters (ISO 4217, e.g. USD), got {0:?}")]
    Currency(String),
}

impl RevenueConfig {
    pub fn validate(&self) -> Result<(), RevenueConfigError> {
        if !(1..=1024).contains(&self.consumer_concurrency) {
            return Err(RevenueConfigError::Concurrency(self.consumer_concurrency));
        }
        if self.consumer_max_deliver == 0 {
            return Err(RevenueConfigError::MaxDeliver);
        }
        if self.consumer_ack_wait < Duration::from_secs(1) {
            return Err(RevenueConfigError::AckWait(self.consumer_ack_wait));
        }
        if !is_currency(&self.currency) {
            return Err(RevenueConfigError::Currency(self.currency.clone()));
        }
        Ok(())
    }
}

/// Three capital ASCII letters, as the ledger's CHECK constraint wants.
pub(crate) fn is_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_mistakes_are_named() {
        assert!(RevenueConfig::default().validate().is_ok());
        let bad = [
            RevenueConfig {
                consumer_concurrency: 0,
                ..RevenueConfig::default()
            },
            RevenueConfig {
                consumer_max_deliver: 0,
                ..RevenueConfig::default()
            },
            RevenueConfig {
                consumer_ack_wait: Duration::from_millis(10),
                ..RevenueConfig::default()
            },
            RevenueConfig {
                currency: "usd".to_owned(),
                ..RevenueConfig::default()
            },
        ];
        for config in bad {
            let err = config.validate().expect_err("refused").to_string();
            assert!(err.starts_with("revenue."), "{err}");
        }
    }
}
