//! GCRA (the generic cell rate algorithm) in Redis.
//!
//! A limit is "`burst` requests at once, refilled at one per `period / burst`". Each key holds
//! one number: its theoretical arrival time (TAT). A request is allowed when
//! `TAT - now <= period - interval`; allowing it moves the TAT on by one interval. A refused
//! request learns exactly when the next one will be allowed, which the gRPC answer carries as
//! `RetryInfo`. One Lua script does the read, the decision and the write atomically, on the
//! server's clock (`TIME`), so instances with skewed clocks still agree and the key expires by
//! itself once it is full again.
//!
//! Two uses: [`RateLimiter::acquire`] counts the request (most limits), and
//! [`RateLimiter::check`] only asks whether one more would be allowed, for limits that count
//! failures after the fact ([`RateLimiter::record`]), such as failed logins. Every call, of one
//! request against one bucket or of many against several ([`RateLimiter::acquire_many`]), is
//! the same script.

use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// One limit: `burst` requests at once, refilled evenly over `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub burst: u32,
    #[serde(with = "humantime_serde")]
    pub period: Duration,
}

impl Limit {
    pub const fn new(burst: u32, period: Duration) -> Self {
        Self { burst, period }
    }

    /// The time one request's allowance takes to come back.
    pub fn interval(&self) -> Duration {
        self.period / self.burst.max(1)
    }
}

/// The outcome of a rate-limit call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed { remaining: u32 },
    Limited { retry_after: Duration },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed { .. })
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RateLimitError {
    #[error("the rate-limit store is unavailable: {0}")]
    Unavailable(#[from] redis::RedisError),
}

/// GCRA over several buckets for `n` requests at once, as if they came one after another at
/// the same instant: the first `k` of them pass every bucket and count against the counting
/// ones; the rest count against none (a refused request never drains another limit). A
/// peeking bucket is only asked, as [`RateLimiter::check`] does: it lets all of them through
/// or none.
///
/// KEYS: the buckets; ARGV: interval, tolerance (µs) and whether it counts (1/0) per bucket,
/// in KEYS order, then `n`. Returns { k, retry_after (µs until request k would pass, 0 when
/// all passed), index (1-based) of the bucket that let the fewest through, or 0, and how many
/// more requests the tightest bucket would still let through after these }.
const GCRA_MANY: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[#ARGV])
local tats = {}
local admitted, refused = n, 0
local lefts = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i - 2])
  local tolerance = tonumber(ARGV[3 * i - 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  tats[i] = tat
  local room = now + tolerance - tat
  local fits = 0
  if room >= 0 then fits = math.floor(room / interval) + 1 end
  local allowed = fits
  if ARGV[3 * i] ~= '1' and fits > 0 then allowed = n end
  -- What is left after this call: a counting bucket lost what it admitted, a peeking one
  -- nothing (both are settled below, once `admitted` is known).
  lefts[i] = fits
  if allowed < admitted then
    admitted = allowed
    refused = i
  end
end
local wait = 0
if admitted < n then
  for i = 1, #KEYS do
    local at = tats[i] - tonumber(ARGV[3 * i - 1])
    if ARGV[3 * i] == '1' then at = at + admitted * tonumber(ARGV[3 * i - 2]) end
    if at - now > wait then wait = at - now end
  end
end
if admitted > 0 then
  for i, key in ipairs(KEYS) do
    if ARGV[3 * i] == '1' then
      local new_tat = tats[i] + admitted * tonumber(ARGV[3 * i - 2])
      local ttl = math.ceil((new_tat - now) / 1000)
      redis.call('SET', key, string.format('%.0f', new_tat), 'PX', ttl)
    end
  end
end
local left = -1
for i = 1, #KEYS do
  local l = lefts[i]
  if ARGV[3 * i] == '1' then l = l - admitted end
  if left < 0 or l < left then left = l end
end
if left < 0 then left = 0 end
return { admitted, wait, refused, math.min(left, 2147483647) }
";

/// One bucket of a [`RateLimiter::acquire_all`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket<'a> {
    pub key: &'a str,
    pub limit: Limit,
    /// Whether an allowed call counts against it; a bucket that does not is only asked, for
    /// limits that count failures after the fact ([`RateLimiter::record`]).
    pub counts: bool,
}

impl<'a> Bucket<'a> {
    /// A bucket the call counts against.
    pub const fn count(key: &'a str, limit: Limit) -> Self {
        Self {
            key,
            limit,
            counts: true,
        }
    }

    /// A bucket the call only checks, as [`RateLimiter::check`] does.
    pub const fn peek(key: &'a str, limit: Limit) -> Self {
        Self {
            key,
            limit,
            counts: false,
        }
    }
}

/// The outcome of [`RateLimiter::acquire_many`]: the first `admitted` requests passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub admitted: u32,
    /// The bucket (in the order given) that let the fewest through, when some were refused.
    pub refused_by: usize,
    /// When the first refused request would pass.
    pub retry_after: Duration,
    /// How many more requests the tightest bucket would let through right after these.
    pub left: u32,
}

impl Admission {
    /// The decision for the `request`-th of the requests (0-based, in the order they came).
    pub fn decision(&self, request: usize) -> AllDecision {
        if request < self.admitted as usize {
            AllDecision::Allowed
        } else {
            AllDecision::Limited {
                index: self.refused_by,
                retry_after: self.retry_after,
            }
        }
    }
}

/// The outcome of [`RateLimiter::acquire_all`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllDecision {
    Allowed,
    /// The bucket at `index` (in the order given) refused; nothing was counted.
    Limited {
        index: usize,
        retry_after: Duration,
    },
}

/// A rate limiter over one Redis, with keys under `prefix`.
#[derive(Clone)]
pub struct RateLimiter {
    redis: ConnectionManager,
    prefix: String,
    many: redis::Script,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// Buckets are stored as `<prefix>rl:<bucket>`.
    pub fn new(redis: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            redis,
            prefix: prefix.into(),
            many: redis::Script::new(GCRA_MANY),
        }
    }

    /// Asks every bucket in one round trip and, if all of them allow the request, counts it
    /// against those that count. All the buckets must live on one Redis (not Redis Cluster
    /// slots).
    pub async fn acquire_all(&self, buckets: &[Bucket<'_>]) -> Result<AllDecision, RateLimitError> {
        Ok(self.acquire_many(buckets, 1).await?.decision(0))
    }

    /// [`acquire_all`](Self::acquire_all) for `requests` requests at once, in one round trip:
    /// how many of them, in order, pass.
    pub async fn acquire_many(
        &self,
        buckets: &[Bucket<'_>],
        requests: u32,
    ) -> Result<Admission, RateLimitError> {
        if buckets.is_empty() || requests == 0 {
            return Ok(Admission {
                admitted: requests,
                refused_by: 0,
                retry_after: Duration::ZERO,
                left: 0,
            });
        }
        let mut invocation = self.many.prepare_invoke();
        for bucket in buckets {
            let interval = micros(bucket.limit.interval()).max(1);
            invocation
                .key(format!("{}rl:{}", self.prefix, bucket.key))
                .arg(interval)
                .arg(micros(bucket.limit.period).saturating_sub(interval))
                .arg(u8::from(bucket.counts));
        }
        invocation.arg(requests);
        let mut redis = self.redis.clone();
        let (admitted, retry_after, index, left): (i64, i64, i64, i64) =
            invocation.invoke_async(&mut redis).await?;
        let admitted = u32::try_from(admitted.clamp(0, i64::from(requests))).unwrap_or(0);
        Ok(Admission {
            admitted,
            left: u32::try_from(left.max(0)).unwrap_or(u32::MAX),
            refused_by: usize::try_from(index - 1).unwrap_or(0),
            retry_after: if admitted < requests {
                Duration::from_micros(u64::try_from(retry_after.max(1)).unwrap_or(1))
            } else {
                Duration::ZERO
            },
        })
    }

    /// Counts one request against `bucket` if it is allowed.
    pub async fn acquire(&self, bucket: &str, limit: Limit) -> Result<Decision, RateLimitError> {
        self.call(Bucket::count(bucket, limit)).await
    }

    /// Whether one more request would be allowed, without counting it.
    pub async fn check(&self, bucket: &str, limit: Limit) -> Result<Decision, RateLimitError> {
        self.call(Bucket::peek(bucket, limit)).await
    }

    /// Counts one request that already happened (e.g. a failed login), which later
    /// [`check`](Self::check)s see. A bucket that is already empty stays empty.
    pub async fn record(&self, bucket: &str, limit: Limit) -> Result<(), RateLimitError> {
        let _ = self.call(Bucket::count(bucket, limit)).await?;
        Ok(())
    }

    /// One request against one bucket, counted or only asked.
    async fn call(&self, bucket: Bucket<'_>) -> Result<Decision, RateLimitError> {
        let admission = self.acquire_many(&[bucket], 1).await?;
        Ok(if admission.admitted == 1 {
            Decision::Allowed {
                remaining: admission.left,
            }
        } else {
            Decision::Limited {
                retry_after: admission.retry_after,
            }
        })
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The gRPC answer for a refused request: `RESOURCE_EXHAUSTED` with `RetryInfo`, and a
/// `QuotaFailure` naming which limit was hit (never the key, which may hold an address).
pub fn limited_status(limit_name: &str, retry_after: Duration) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt};
    let mut details = ErrorDetails::with_retry_info(Some(retry_after));
    details.add_quota_failure_violation(limit_name, "too many requests; retry later");
    tonic::Status::with_error_details(
        tonic::Code::ResourceExhausted,
        "too many requests; retry later",
        details,
    )
}
