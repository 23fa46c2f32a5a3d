//! Rate-limit calls sharing round trips, against a real Redis: the decisions stay those of
//! the shared buckets, and a busy bucket set costs far fewer round trips than calls.

use std::sync::Arc;
use std::time::Duration;

use wharf_resilience::{AllDecision, Bucket, CoalescingLimiter, Decision, Limit, RateLimiter};
use wharf_testkit::{TestRedis, unique_name};

async fn limiter(redis: &TestRedis, prefix: &str) -> RateLimiter {
    let client = redis::Client::open(redis.url()).unwrap();
    let manager = redis::aio::ConnectionManager::new(client).await.unwrap();
    RateLimiter::new(manager, prefix.to_owned())
}

/// `calls` calls from `callers` concurrent tasks on `limiter` (each a separate instance or
/// the same one): how many were allowed.
async fn hammer(
    limiters: &[CoalescingLimiter],
    callers: usize,
    calls: usize,
    limit: Limit,
) -> usize {
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let limiter = limiters[caller % limiters.len()].clone();
            tokio::spawn(async move {
                let mut allowed = 0;
                for _ in 0..calls {
                    let buckets = [Bucket::count("addr", limit), Bucket::count("user", limit)];
                    if limiter.acquire_all(&buckets).await.unwrap() == AllDecision::Allowed {
                        allowed += 1;
                    }
                }
                allowed
            })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += task.await.unwrap();
    }
    allowed
}

/// Near a limit every call asks Redis: two instances with 32 callers each against a burst of
/// 20 let exactly 20 through, and the refused ones learn the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_limit_is_exact_across_instances() {
    let redis = TestRedis::start().await.unwrap();
    let prefix = unique_name("p");
    let instances = [
        CoalescingLimiter::new(limiter(&redis, &prefix).await),
        CoalescingLimiter::new(limiter(&redis, &prefix).await),
    ];
    let limit = Limit::new(20, Duration::from_secs(600));
    assert_eq!(hammer(&instances, 64, 3, limit).await, 20);

    let AllDecision::Limited { retry_after, .. } = instances[0]
        .acquire_all(&[Bucket::count("addr", limit), Bucket::count("user", limit)])
        .await
        .unwrap()
    else {
        panic!("the bucket is empty");
    };
    assert!(retry_after > Duration::from_secs(20), "{retry_after:?}");
}

/// A roomy bucket set called by many at once costs a fraction of a round trip per call, and
/// Redis has counted at least every call that was allowed (less what the buckets refilled
/// meanwhile: GCRA refills continuously, here about 278 a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_bucket_set_shares_round_trips_and_undercounts_nothing() {
    let redis = TestRedis::start().await.unwrap();
    let prefix = unique_name("p");
    let plain = limiter(&redis, &prefix).await;
    let coalescing = CoalescingLimiter::new(plain.clone());
    let period = Duration::from_secs(3600);
    let limit = Limit::new(1_000_000, period);
    let started = std::time::Instant::now();
    let allowed = hammer(std::slice::from_ref(&coalescing), 32, 200, limit).await;
    assert_eq!(allowed, 32 * 200);
    let trips = coalescing.round_trips();
    assert!(
        trips * 4 < 6_400,
        "{trips} round trips for 6,400 calls: fewer than one per four expected"
    );
    for bucket in ["addr", "user"] {
        let Decision::Allowed { remaining } = plain.check(bucket, limit).await.unwrap() else {
            panic!("a roomy bucket");
        };
        let refilled =
            (started.elapsed().as_secs_f64() * 1_000_000.0 / period.as_secs_f64()).ceil() as u64;
        assert!(
            u64::from(remaining) <= 1_000_000 - 6_400 + refilled,
            "{bucket}: {remaining} left, but 6,400 calls were allowed and at most {refilled} refilled"
        );
    }
}

/// A slow caller never takes allowances ahead: one call per round trip, each counted once.
#[tokio::test]
async fn a_slow_caller_takes_nothing_ahead() {
    let redis = TestRedis::start().await.unwrap();
    let prefix = unique_name("p");
    let plain = limiter(&redis, &prefix).await;
    let coalescing = CoalescingLimiter::new(plain.clone());
    let limit = Limit::new(100, Duration::from_secs(3600));
    for _ in 0..3 {
        let buckets = [Bucket::count("addr", limit)];
        assert_eq!(
            coalescing.acquire_all(&buckets).await.unwrap(),
            AllDecision::Allowed
        );
        tokio::time::sleep(wharf_resilience::coalesce::LEASE_TTL * 2).await;
    }
    assert_eq!(coalescing.round_trips(), 3);
    assert_eq!(
        plain.check("addr", limit).await.unwrap(),
        Decision::Allowed { remaining: 97 }
    );
}

/// Redis unreachable: every queued call gets the error, none hangs.
#[tokio::test]
async fn an_unreachable_store_fails_every_queued_call() {
    let mut redis = TestRedis::start().await.unwrap();
    let config = wharf_runtime::config::RedisConfig {
        url: redis.url(),
        ..Default::default()
    };
    let coalescing = Arc::new(CoalescingLimiter::new(RateLimiter::new(
        config.connect_lazy().unwrap(),
        "p:",
    )));
    redis.kill9();
    let limit = Limit::new(10, Duration::from_secs(1));
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let coalescing = Arc::clone(&coalescing);
            tokio::spawn(async move {
                coalescing
                    .acquire_all(&[Bucket::count("addr", limit)])
                    .await
            })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().is_err());
    }
}
