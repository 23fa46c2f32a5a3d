//! Authentication and rate limits at the edge, before anything is forwarded.
//!
//! An access token is verified (signature, claims; see `wharf_tokens`), then its session must
//! still be active in Redis. Both results are cached: a verified token until its expiry
//! (keyed by its SHA-256, so the cache holds no credential), a session's state for
//! `session_cache_ttl` — so a revoked session's tokens are refused within that bound, and a
//! busy client costs one Redis read per session per period instead of one per call.
//!
//! Redis unreachable (ARCHITECTURE §8): tokens still verify by signature until they expire,
//! and calls are not rate limited; both are logged. Redis *lost* (sessions gone) is different:
//! the sessions read as inactive and their tokens are refused — users log in again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tonic::Status;
use wharf_resilience::ratelimit::limited_status;
use wharf_resilience::{AllDecision, Bucket, CoalescingLimiter, RateLimiter};
use wharf_tokens::layer::{UNAUTHENTICATED, parse_bearer};
use wharf_tokens::session::ActiveSessions;
use wharf_tokens::{Identity, TokenError, Tokens};

use crate::cache::TtlCache;
use crate::config::GatewayLimits;

/// Counters of the edge, for operators.
#[derive(Debug, Default)]
pub struct EdgeStats {
    pub refused_tokens: AtomicU64,
    pub inactive_sessions: AtomicU64,
    pub limited: AtomicU64,
    /// Calls let through on signature alone, or without a limit, while Redis was unreachable.
    pub redis_unavailable: AtomicU64,
}

#[derive(Debug)]
pub struct Edge {
    tokens: Arc<Tokens>,
    sessions: ActiveSessions,
    limiter: CoalescingLimiter,
    limits: GatewayLimits,
    verified: TtlCache<[u8; 32], Identity>,
    session_state: TtlCache<String, bool>,
    session_ttl: Duration,
    trust_forwarded_for: bool,
    stats: EdgeStats,
}

/// What [`Edge::new`] needs.
#[derive(Debug)]
pub struct EdgeParts {
    pub tokens: Arc<Tokens>,
    pub sessions: ActiveSessions,
    pub limiter: RateLimiter,
    pub limits: GatewayLimits,
    pub token_cache_entries: usize,
    pub session_cache_ttl: Duration,
    pub trust_forwarded_for: bool,
}

fn unauthenticated() -> Status {
    Status::unauthenticated(UNAUTHENTICATED)
}

impl Edge {
    pub fn new(parts: EdgeParts) -> Self {
        Self {
            tokens: parts.tokens,
            sessions: parts.sessions,
            limiter: CoalescingLimiter::new(parts.limiter),
            limits: parts.limits,
            verified: TtlCache::new(parts.token_cache_entries),
            session_state: TtlCache::new(parts.token_cache_entries),
            session_ttl: parts.session_cache_ttl,
            trust_forwarded_for: parts.trust_forwarded_for,
            stats: EdgeStats::default(),
        }
    }

    pub fn stats(&self) -> &EdgeStats {
        &self.stats
    }

    /// The caller behind `authorization: Bearer <token>`, whose session is active. Every
    /// refusal is the same `UNAUTHENTICATED`; the reason is logged.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Identity, Status> {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_bearer)
            .ok_or_else(unauthenticated)?;
        let identity = self.verify(token)?;
        if self.session_active(&identity).await {
            Ok(identity)
        } else {
            self.stats.inactive_sessions.fetch_add(1, Ordering::Relaxed);
            tracing::info!(session_id = %identity.session_id, "refused a token of an inactive session");
            Err(unauthenticated())
        }
    }

    fn verify(&self, token: &str) -> Result<Identity, Status> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = unix_now();
        if let Some(identity) = self.verified.get(&digest)
            && identity.expires_at > now
        {
            return Ok(identity);
        }
        match self.tokens.verify(token) {
            Ok(identity) => {
                let left = Duration::from_secs(identity.expires_at.saturating_sub(now));
                self.verified
                    .insert(digest, identity.clone(), Instant::now() + left);
                Ok(identity)
            }
            Err(TokenError::Invalid { reason }) => {
                self.stats.refused_tokens.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%reason, "refused an access token");
                Err(unauthenticated())
            }
            Err(TokenError::NoSigningKey) => Err(Status::internal("internal error")),
        }
    }

    async fn session_active(&self, identity: &Identity) -> bool {
        let key = format!("{}\0{}", identity.session_id, identity.user_id);
        if let Some(active) = self.session_state.get(&key) {
            return active;
        }
        match self
            .sessions
            .is_active(&identity.session_id, &identity.user_id)
            .await
        {
            Ok(active) => {
                self.session_state
                    .insert(key, active, Instant::now() + self.session_ttl);
                active
            }
            Err(err) => {
                // §8: with Redis unreachable, tokens verify by signature until they expire.
                self.stats.redis_unavailable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, "session store unreachable; accepting the token on its signature");
                true
            }
        }
    }

    /// Counts one call against the caller's address and, when authenticated, the user; both
    /// in one Redis round trip, shared by every gateway instance, and shared with the calls
    /// for the same buckets that arrive while it is in flight.
    pub async fn admit(&self, user: Option<&Identity>, address: &str) -> Result<(), Status> {
        let by_address = format!("gw:addr:{address}");
        let by_user = user.map(|identity| format!("gw:user:{}", identity.user_id));
        let mut buckets = vec![Bucket::count(&by_address, self.limits.per_address)];
        if let Some(bucket) = &by_user {
            buckets.push(Bucket::count(bucket, self.limits.per_user));
        }
        match self.limiter.acquire_all(&buckets).await {
            Ok(AllDecision::Allowed) => Ok(()),
            Ok(AllDecision::Limited { index, retry_after }) => {
                self.stats.limited.fetch_add(1, Ordering::Relaxed);
                let name = if index == 0 {
                    "per_address"
                } else {
                    "per_user"
                };
                Err(limited_status(name, retry_after))
            }
            Err(err) => {
                self.stats.redis_unavailable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, "rate-limit store unreachable; call not limited");
                Ok(())
            }
        }
    }

    /// The client's address: the TCP peer, or the first `x-forwarded-for` entry when the
    /// gateway is configured to trust the proxy in front of it.
    pub fn client_address(&self, headers: &http::HeaderMap, peer: Option<SocketAddr>) -> String {
        if self.trust_forwarded_for
            && let Some(forwarded) = headers
                .get("x-forwarded-for")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.split(',').next())
                .map(str::trim)
                .filter(|value| !value.is_empty())
        {
            return forwarded.to_owned();
        }
        peer.map_or_else(|| "unknown".to_owned(), |addr| addr.ip().to_string())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
