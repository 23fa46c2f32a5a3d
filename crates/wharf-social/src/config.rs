//! The `[social]` section.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocialConfig {
    /// Events each consumer (registration, feed, achievements) applies at once. Part of the
    /// durable consumers' server-side settings (`max_ack_pending` = this × the batch of 16): every instance
    /// and restart of the service must use the same value, or start-up refuses the
    /// contradiction.
    pub consumer_concurrency: usize,
    /// Failed deliveries of an event before it is dead-lettered. An event that can never apply
    /// (a trade id that is not a UUID, say) is dead-lettered at once; a database outage never
    /// counts.
    pub consumer_max_deliver: u32,
    /// Unacknowledged time after which JetStream redelivers an event (a consumer killed
    /// mid-apply). Like the concurrency, fixed on the server for the durable consumers.
    #[serde(with = "humantime_serde")]
    pub consumer_ack_wait: Duration,
    /// Fire-and-forget messages (`social.achievement.unlocked`, user notifications) queued
    /// for NATS at most; beyond it they are dropped and counted, never waited for.
    pub fire_and_forget_queue: usize,
    /// Run the outbox relay for the social schema inside the service (the registration
    /// replies leave through it). Off when a separate `wharf relay` publishes the schema.
    pub relay: bool,
}

impl Default for SocialConfig {
    fn default() -> Self {
        Self {
            consumer_concurrency: 16,
            consumer_max_deliver: 5,
            consumer_ack_wait: Duration::from_secs(30),
            fire_and_forget_queue: 4096,
            relay: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SocialConfigError {
    #[error("social.consumer_concurrency must be 1 to 1024, got {0}")]
    Concurrency(usize),
    #[error("social.consumer_max_deliver must be at least 1")]
    MaxDeliver,
    #[error("social.consumer_ack_wait must be at least one second, got {0:?}")]
    AckWait(Duration),
    #[error("social.fire_and_forget_queue must be 1 to 1048576, got {0}")]
    Queue(usize),
}

impl SocialConfig {
    pub fn validate(&self) -> Result<(), SocialConfigError> {
        if !(1..=1024).contains(&self.consumer_concurrency) {
            return Err(SocialConfigError::Concurrency(self.consumer_concurrency));
        }
        if self.consumer_max_deliver == 0 {
            return Err(SocialConfigError::MaxDeliver);
        }
        if self.consumer_ack_wait < Duration::from_secs(1) {
            return Err(SocialConfigError::AckWait(self.consumer_ack_wait));
        }
        if !(1..=1 << 20).contains(&self.fire_and_forget_queue) {
            return Err(SocialConfigError::Queue(self.fire_and_forget_queue));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_mistakes_are_named() {
        assert!(SocialConfig::default().validate().is_ok());
        let bad = [
            SocialConfig {
                consumer_concurrency: 0,
                ..SocialConfig::default()
            },
            SocialConfig {
                consumer_max_deliver: 0,
                ..SocialConfig::default()
            },
            SocialConfig {
                consumer_ack_wait: Duration::from_millis(10),
                ..SocialConfig::default()
            },
            SocialConfig {
                fire_and_forget_queue: 0,
                ..SocialConfig::default()
            },
        ];
        for config in bad {
            let err = config.validate().expect_err("refused").to_string();
            assert!(err.starts_with("social."), "{err}");
        }
    }
}
