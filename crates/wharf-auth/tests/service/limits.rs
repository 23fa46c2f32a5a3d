//! Brute force and abuse: limits per address and per account, in Redis.

use std::time::Duration;

use tonic::Code;
use tonic_types::StatusExt;
use wharf_auth::AuthConfig;
use wharf_resilience::Limit;

use crate::harness::{Harness, PASSWORD, assert_code, email, loose_limits, test_config};

fn retry_delay(status: &tonic::Status) -> Duration {
    status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo on a limited call")
}

/// An attacker guessing from one address is shut out of the account from there, while the
/// owner, from another address, logs in at once.
#[tokio::test]
async fn guessing_from_one_address_is_stopped_and_the_owner_still_logs_in() {
    let config = AuthConfig {
        limits: wharf_auth::AuthLimits {
            login_failures_per_account_address: Limit::new(3, Duration::from_secs(600)),
            ..loose_limits()
        },
        ..test_config()
    };
    let h = Harness::start_with(config, None).await;
    let victim = email();
    h.active_user(&victim).await;

    for _ in 0..3 {
        assert_code(
            h.login_from(&victim, "guess guess guess", "203.0.113.7")
                .await,
            Code::Unauthenticated,
            "a wrong guess",
        );
    }
    let limited = assert_code(
        h.login_from(&victim, PASSWORD, "203.0.113.7").await,
        Code::ResourceExhausted,
        "the attacker's address, even with the right password",
    );
    assert!(retry_delay(&limited) > Duration::from_secs(60));
    let quota = limited.get_details_quota_failure().unwrap();
    assert_eq!(
        quota.violations[0].subject,
        "login_failures_per_account_address"
    );

    h.login_from(&victim, PASSWORD, "198.51.100.1")
        .await
        .expect("the owner from a clean address");
}

/// Guessing from many addresses exhausts the account's own limit, but only for a short
/// cooldown: the owner waits the RetryInfo delay once and gets in. (Three failures per 15 s:
/// the three guesses, each a password hash, must land within one 5 s emission interval, which
/// holds on a loaded machine; with 3 per 3 s a slow run saw the account's allowance refill
/// before the owner's attempt.)
#[tokio::test]
async fn distributed_guessing_costs_the_owner_only_a_short_cooldown() {
    let config = AuthConfig {
        limits: wharf_auth::AuthLimits {
            login_failures_per_account: Limit::new(3, Duration::from_secs(15)),
            ..loose_limits()
        },
        ..test_config()
    };
    let h = Harness::start_with(config, None).await;
    let victim = email();
    h.active_user(&victim).await;

    for attacker in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        assert_code(
            h.login_from(&victim, "guess guess guess", attacker).await,
            Code::Unauthenticated,
            "a wrong guess",
        );
    }
    let limited = assert_code(
        h.login_from(&victim, PASSWORD, "198.51.100.1").await,
        Code::ResourceExhausted,
        "the account is cooling down",
    );
    let cooldown = retry_delay(&limited);
    assert!(
        cooldown <= Duration::from_secs(5),
        "a short cooldown (one emission interval at most), got {cooldown:?}"
    );
    // The server's own retry hint, honoured as a client would.
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    h.login_from(&victim, PASSWORD, "198.51.100.1")
        .await
        .expect("the owner after the cooldown");
}

/// A flood from one address is refused before any password is hashed.
#[tokio::test]
async fn a_login_flood_from_one_address_is_refused_early() {
    let config = AuthConfig {
        limits: wharf_auth::AuthLimits {
            login_per_address: Limit::new(2, Duration::from_secs(600)),
            ..loose_limits()
        },
        ..test_config()
    };
    let h = Harness::start_with(config, None).await;
    let user = email();
    h.active_user(&user).await;
    let hashes_before = h.passwords.hashes_computed();
    for _ in 0..2 {
        h.login_from(&user, PASSWORD, "192.0.2.9").await.unwrap();
    }
    let limited = assert_code(
        h.login_from(&user, PASSWORD, "192.0.2.9").await,
        Code::ResourceExhausted,
        "third login from the address",
    );
    assert!(retry_delay(&limited) > Duration::ZERO);
    assert_eq!(
        h.passwords.hashes_computed() - hashes_before,
        2,
        "the refused attempt cost no hash"
    );
}
