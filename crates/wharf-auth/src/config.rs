//! The `[auth]` section.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wharf_resilience::Limit;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// How long a login's session may stay *pending* (written, its `logged_in` event not yet
    /// acknowledged). Must exceed `login_publish_timeout`: it is the safety net that removes a
    /// session whose login crashed half-way.
    #[serde(with = "humantime_serde")]
    pub pending_session_ttl: Duration,
    /// Absolute lifetime of a session and its refresh tokens (rotation does not extend it).
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Longest wait for the `auth.user.logged_in` ack; a shorter client deadline wins.
    #[serde(with = "humantime_serde")]
    pub login_publish_timeout: Duration,
    /// argon2id computations at once; 0 = one per core.
    pub password_workers: usize,
    /// Password checks allowed to wait beyond the workers; the next is refused at once.
    pub password_queue: usize,
    /// CPU priority of the hashing threads: `low` (nice 19, the default), `idle` or `normal`.
    pub password_priority: crate::password::HashPriority,
    /// A cgroup directory the hashing threads move into (cgroup v1: made with
    /// `cpu.idle = 1`, so their CPU is not charged to the service's group; see
    /// [`crate::password::HashPlacement::cgroup`]); unset, they stay in the process's group.
    pub password_cgroup: Option<std::path::PathBuf>,
    /// Take the client address from `x-forwarded-for` (set by the gateway). Only enable
    /// behind a proxy that overwrites the header, or clients choose their own address.
    pub trust_forwarded_for: bool,
    /// Run the outbox relay for the auth schema inside the service.
    pub relay: bool,
    pub limits: AuthLimits,
    /// Registrations stuck PENDING: when to retry and when to compensate.
    pub saga: crate::reconcile::SagaDeadlines,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            pending_session_ttl: Duration::from_secs(30),
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            login_publish_timeout: Duration::from_secs(2),
            password_workers: 0,
            password_queue: 8,
            password_priority: crate::password::HashPriority::default(),
            password_cgroup: None,
            trust_forwarded_for: false,
            relay: true,
            limits: AuthLimits::default(),
            saga: crate::reconcile::SagaDeadlines::default(),
        }
    }
}

/// Rate limits, kept in Redis and shared by every auth instance.
///
/// Failed logins are limited per account *and address* (an attacker's address is shut out for
/// long) and per account from anywhere (distributed guessing is slowed) with a short period,
/// so the victim, from a clean address, waits at most a short cooldown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthLimits {
    /// Every login attempt from one address.
    pub login_per_address: Limit,
    /// Failed logins for one account from one address.
    pub login_failures_per_account_address: Limit,
    /// Failed logins for one account from any address.
    pub login_failures_per_account: Limit,
    /// Registrations from one address.
    pub register_per_address: Limit,
    /// Refreshes from one address.
    pub refresh_per_address: Limit,
}

impl Default for AuthLimits {
    fn default() -> Self {
        Self {
            login_per_address: Limit::new(30, Duration::from_secs(60)),
            login_failures_per_account_address: Limit::new(5, Duration::from_secs(300)),
            login_failures_per_account: Limit::new(20, Duration::from_secs(60)),
            register_per_address: Limit::new(10, Duration::from_secs(60)),
            refresh_per_address: Limit::new(120, Duration::from_secs(60)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "auth.pending_session_ttl ({pending:?}) must exceed auth.login_publish_timeout ({publish:?}): a pending session must outlive the publish it waits for"
    )]
    PendingTooShort {
        pending: Duration,
        publish: Duration,
    },
    #[error("auth.session_ttl must be at least one minute")]
    SessionTooShort,
    #[error("auth.limits.{0}: burst and period must be positive")]
    BadLimit(&'static str),
    #[error("auth.saga.give_up_after must exceed auth.saga.retry_after")]
    SagaDeadlines,
}

impl AuthConfig {
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        if self.pending_session_ttl <= self.login_publish_timeout {
            return Err(AuthConfigError::PendingTooShort {
                pending: self.pending_session_ttl,
                publish: self.login_publish_timeout,
            });
        }
        if self.session_ttl < Duration::from_secs(60) {
            return Err(AuthConfigError::SessionTooShort);
        }
        if self.saga.give_up_after <= self.saga.retry_after {
            return Err(AuthConfigError::SagaDeadlines);
        }
        let limits = &self.limits;
        for (name, limit) in [
            ("login_per_address", limits.login_per_address),
            (
                "login_failures_per_account_address",
                limits.login_failures_per_account_address,
            ),
            (
                "login_failures_per_account",
                limits.login_failures_per_account,
            ),
            ("register_per_address", limits.register_per_address),
            ("refresh_per_address", limits.refresh_per_address),
        ] {
            if limit.burst == 0 || limit.period.is_zero() {
                return Err(AuthConfigError::BadLimit(name));
            }
        }
        Ok(())
    }
}
