//! The GCRA limiter against a real Redis.

use std::time::Duration;

use wharf_resilience::{AllDecision, Bucket, Decision, Limit, RateLimiter};
use wharf_testkit::{TestRedis, unique_name};

async fn limiter(redis: &TestRedis, prefix: &str) -> RateLimiter {
    let client = redis::Client::open(redis.url()).unwrap();
    let manager = redis::aio::ConnectionManager::new(client).await.unwrap();
    RateLimiter::new(manager, prefix.to_owned())
}

/// A burst is allowed at once, the next request is refused with the exact wait, and after
/// that wait one more is allowed.
#[tokio::test]
async fn burst_then_refusal_with_the_wait_then_refill() {
    let redis = TestRedis::start().await.unwrap();
    let rl = limiter(&redis, &unique_name("p")).await;
    let limit = Limit::new(3, Duration::from_secs(3));

    for expected_remaining in [2, 1, 0] {
        assert_eq!(
            rl.acquire("k", limit).await.unwrap(),
            Decision::Allowed {
                remaining: expected_remaining
            }
        );
    }
    let Decision::Limited { retry_after } = rl.acquire("k", limit).await.unwrap() else {
        panic!("the fourth request of a burst of three");
    };
    assert!(
        retry_after > Duration::from_millis(500) && retry_after <= Duration::from_secs(1),
        "one interval (1 s) minus the elapsed time, got {retry_after:?}"
    );
    tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
    assert!(rl.acquire("k", limit).await.unwrap().is_allowed());
    assert!(!rl.acquire("k", limit).await.unwrap().is_allowed());
}

/// `check` never consumes; `record` does, and later checks see it.
#[tokio::test]
async fn check_peeks_and_record_counts() {
    let redis = TestRedis::start().await.unwrap();
    let rl = limiter(&redis, &unique_name("p")).await;
    let limit = Limit::new(2, Duration::from_secs(600));
    for _ in 0..5 {
        assert!(rl.check("k", limit).await.unwrap().is_allowed());
    }
    rl.record("k", limit).await.unwrap();
    assert!(rl.check("k", limit).await.unwrap().is_allowed());
    rl.record("k", limit).await.unwrap();
    assert!(!rl.check("k", limit).await.unwrap().is_allowed());
}

/// Several buckets in one call: an allowed call counts against the counting buckets only; a
/// refusal by any bucket (counting or peeking) names it and counts against none.
#[tokio::test]
async fn acquire_all_counts_what_counts_and_a_refusal_counts_nothing() {
    let redis = TestRedis::start().await.unwrap();
    let rl = limiter(&redis, &unique_name("p")).await;
    let roomy = Limit::new(10, Duration::from_secs(600));
    let tight = Limit::new(2, Duration::from_secs(600));
    let call = [Bucket::count("a", roomy), Bucket::peek("f", tight)];

    for _ in 0..3 {
        assert_eq!(rl.acquire_all(&call).await.unwrap(), AllDecision::Allowed);
    }
    assert_eq!(
        rl.check("a", roomy).await.unwrap(),
        Decision::Allowed { remaining: 7 },
        "three calls counted against the counting bucket"
    );
    assert_eq!(
        rl.check("f", tight).await.unwrap(),
        Decision::Allowed { remaining: 2 },
        "nothing counted against the peeking one"
    );

    rl.record("f", tight).await.unwrap();
    rl.record("f", tight).await.unwrap();
    let AllDecision::Limited { index, retry_after } = rl.acquire_all(&call).await.unwrap() else {
        panic!("the peeked bucket is full");
    };
    assert_eq!(index, 1);
    assert!(retry_after > Duration::from_secs(200), "{retry_after:?}");
    assert_eq!(
        rl.check("a", roomy).await.unwrap(),
        Decision::Allowed { remaining: 7 },
        "the refused call counted against nothing"
    );

    let first_full = [Bucket::count("b", tight), Bucket::count("a", roomy)];
    assert_eq!(
        rl.acquire_all(&first_full).await.unwrap(),
        AllDecision::Allowed
    );
    assert_eq!(
        rl.acquire_all(&first_full).await.unwrap(),
        AllDecision::Allowed
    );
    let AllDecision::Limited { index, .. } = rl.acquire_all(&first_full).await.unwrap() else {
        panic!("the first bucket is full");
    };
    assert_eq!(index, 0);
    assert_eq!(
        rl.check("a", roomy).await.unwrap(),
        Decision::Allowed { remaining: 5 },
        "two allowed calls counted, the refused one not"
    );
    assert_eq!(rl.acquire_all(&[]).await.unwrap(), AllDecision::Allowed);
}

/// Two limiters on separate connections (two service instances) share one bucket; keys under
/// different prefixes do not.
#[tokio::test]
async fn instances_share_buckets_and_prefixes_isolate() {
    let redis = TestRedis::start().await.unwrap();
    let prefix = unique_name("p");
    let a = limiter(&redis, &prefix).await;
    let b = limiter(&redis, &prefix).await;
    let other = limiter(&redis, &unique_name("q")).await;
    let limit = Limit::new(2, Duration::from_secs(600));
    assert!(a.acquire("k", limit).await.unwrap().is_allowed());
    assert!(b.acquire("k", limit).await.unwrap().is_allowed());
    assert!(!a.acquire("k", limit).await.unwrap().is_allowed());
    assert!(!b.acquire("k", limit).await.unwrap().is_allowed());
    assert!(other.acquire("k", limit).await.unwrap().is_allowed());
}

/// Redis down: an error, not a hang and not an "allowed".
#[tokio::test]
async fn an_unreachable_store_is_an_error() {
    let mut redis = TestRedis::start().await.unwrap();
    let config = wharf_runtime::config::RedisConfig {
        url: redis.url(),
        ..Default::default()
    };
    let rl = RateLimiter::new(config.connect_lazy().unwrap(), "p:");
    let limit = Limit::new(2, Duration::from_secs(1));
    assert!(rl.acquire("k", limit).await.unwrap().is_allowed());
    redis.kill9();
    assert!(rl.acquire("k", limit).await.is_err());
}
