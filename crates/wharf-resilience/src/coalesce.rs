//! Rate-limit calls for the same buckets sharing Redis round trips.
//!
//! A busy gateway asks Redis about the same few buckets (one client address, one user) many
//! times a second. [`CoalescingLimiter::acquire_all`] does two things about it, and neither
//! lets the instances together exceed a limit: every allowance still comes out of the one
//! bucket in Redis that all of them share.
//!
//! - **Merging.** A call queues behind the one already in flight for the same buckets; when
//!   that returns, everything queued meanwhile goes as one [`RateLimiter::acquire_many`]
//!   call, and the answer is handed out in arrival order: the first `k` pass, the rest are
//!   refused with the wait.
//! - **Leasing.** When calls for the same buckets come faster than one per [`LEASE_TTL`], a
//!   round trip also takes allowances ahead for as many calls as came since the last one
//!   (at most [`MAX_LEASE`], and at most an eighth of what the tightest bucket had left),
//!   which the next calls spend here without a round trip. Allowances not spent within
//!   [`LEASE_TTL`] are dropped: counted but unused, they only make the limit stricter, and
//!   the next lease follows the calls that came. A client calling slower than that never
//!   gets a lease, and near a limit the lease shrinks to nothing, so every call asks Redis
//!   and small limits are exact; at worst a client gets an eighth of a burst early while
//!   the bucket refills.
//!
//! An idle limiter makes one round trip per call, as before.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::ratelimit::{AllDecision, Bucket, Limit, RateLimitError, RateLimiter};

/// The most allowances one round trip takes ahead for later calls.
pub const MAX_LEASE: u32 = 64;
/// How long allowances taken ahead may be spent.
pub const LEASE_TTL: Duration = Duration::from_millis(50);

type Reply = oneshot::Sender<Result<AllDecision, RateLimitError>>;

/// One bucket set's state on this instance.
struct Queue {
    buckets: Arc<[(String, Limit, bool)]>,
    waiting: Vec<Reply>,
    draining: bool,
    /// Allowances taken ahead, spendable until `lease_until`.
    lease: u32,
    lease_until: Instant,
    /// Calls since the last round trip started.
    arrived: u32,
    /// When the last round trip returned.
    last_trip: Option<Instant>,
    /// An eighth of what the tightest bucket had left after it (the cap on the next lease).
    room: u32,
}

impl Queue {
    fn live(&self, now: Instant) -> bool {
        self.draining || (self.lease > 0 && now < self.lease_until)
    }
}

#[derive(Default)]
struct Queues {
    by_buckets: HashMap<String, Queue>,
    /// The size at which idle entries are swept out next.
    sweep_at: usize,
}

/// A [`RateLimiter`] whose calls for the same buckets share round trips.
#[derive(Clone)]
pub struct CoalescingLimiter {
    limiter: RateLimiter,
    queues: Arc<Mutex<Queues>>,
    round_trips: Arc<AtomicU64>,
}

impl std::fmt::Debug for CoalescingLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoalescingLimiter")
            .field("limiter", &self.limiter)
            .field("round_trips", &self.round_trips())
            .finish_non_exhaustive()
    }
}

impl CoalescingLimiter {
    pub fn new(limiter: RateLimiter) -> Self {
        Self {
            limiter,
            queues: Arc::default(),
            round_trips: Arc::default(),
        }
    }

    /// Round trips to Redis so far (for tests and metrics).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// The decision [`RateLimiter::acquire_all`] would make, give or take a lease. Must be
    /// called within a Tokio runtime: the round trips run on a task of their own, so a
    /// caller that gives up never strands the calls queued behind it.
    pub async fn acquire_all(&self, buckets: &[Bucket<'_>]) -> Result<AllDecision, RateLimitError> {
        let mut id = String::new();
        for bucket in buckets {
            let _ = write!(
                id,
                "{}\0{}\0{:?}\0{}\0",
                bucket.key,
                bucket.limit.burst,
                bucket.limit.period,
                u8::from(bucket.counts)
            );
        }
        let (reply, answer) = oneshot::channel();
        let drain = {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if queues.by_buckets.len() >= queues.sweep_at {
                queues.by_buckets.retain(|_, queue| queue.live(now));
                queues.sweep_at = (queues.by_buckets.len() * 2).max(1024);
            }
            let queue = queues
                .by_buckets
                .entry(id.clone())
                .or_insert_with(|| Queue {
                    buckets: buckets
                        .iter()
                        .map(|b| (b.key.to_owned(), b.limit, b.counts))
                        .collect(),
                    waiting: Vec::new(),
                    draining: false,
                    lease: 0,
                    lease_until: now,
                    arrived: 0,
                    last_trip: None,
                    room: 0,
                });
            queue.arrived = queue.arrived.saturating_add(1);
            if queue.lease > 0 && now < queue.lease_until {
                queue.lease -= 1;
                return Ok(AllDecision::Allowed);
            }
            queue.waiting.push(reply);
            !std::mem::replace(&mut queue.draining, true)
        };
        if drain {
            tokio::spawn(self.clone().drain(id));
        }
        answer.await.unwrap_or_else(|_| {
            Err(RateLimitError::Unavailable(redis::RedisError::from((
                redis::ErrorKind::Io,
                "the rate-limit call was abandoned",
            ))))
        })
    }

    /// Sends what is queued for `id`, one round trip at a time, until nothing is left.
    async fn drain(self, id: String) {
        loop {
            let mut leased = Vec::new();
            let next = {
                let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
                let Some(queue) = queues.by_buckets.get_mut(&id) else {
                    return;
                };
                // Calls that queued while the last round trip was out spend what it leased.
                if queue.lease > 0 && Instant::now() < queue.lease_until {
                    let served = queue.waiting.len().min(queue.lease as usize);
                    queue.lease -= u32::try_from(served).unwrap_or(0);
                    leased.extend(queue.waiting.drain(..served));
                }
                if queue.waiting.is_empty() {
                    queue.draining = false;
                    if !queue.live(Instant::now()) {
                        queues.by_buckets.remove(&id);
                    }
                    None
                } else {
                    // The calls since the last round trip, if it was recent: what a lease of
                    // that size would have saved.
                    let recent = queue.last_trip.is_some_and(|at| at.elapsed() < LEASE_TTL);
                    let demand = if recent { queue.arrived } else { 0 };
                    queue.arrived = 0;
                    Some((
                        Arc::clone(&queue.buckets),
                        std::mem::take(&mut queue.waiting),
                        demand.min(queue.room).min(MAX_LEASE),
                    ))
                }
            };
            for reply in leased {
                let _ = reply.send(Ok(AllDecision::Allowed));
            }
            let Some((buckets, batch, ahead)) = next else {
                return;
            };
            let asked: Vec<Bucket<'_>> = buckets
                .iter()
                .map(|(key, limit, counts)| Bucket {
                    key,
                    limit: *limit,
                    counts: *counts,
                })
                .collect();
            let waiting = u32::try_from(batch.len()).unwrap_or(u32::MAX);
            self.round_trips.fetch_add(1, Ordering::Relaxed);
            let outcome = self
                .limiter
                .acquire_many(&asked, waiting.saturating_add(ahead))
                .await;
            {
                let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(queue) = queues.by_buckets.get_mut(&id) {
                    let now = Instant::now();
                    let (lease, room) = outcome.as_ref().map_or((0, 0), |admission| {
                        (
                            admission.admitted.saturating_sub(waiting),
                            admission.left / 8,
                        )
                    });
                    queue.lease = lease;
                    queue.lease_until = now + LEASE_TTL;
                    queue.last_trip = Some(now);
                    queue.room = room;
                }
            }
            for (index, reply) in batch.into_iter().enumerate() {
                let _ = reply.send(match &outcome {
                    Ok(admission) => Ok(admission.decision(index)),
                    Err(err) => Err(err.clone()),
                });
            }
        }
    }
}
