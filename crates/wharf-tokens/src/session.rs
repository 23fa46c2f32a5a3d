//! Whether an access token's session is still active: the one fact about auth's session store
//! that the other services and the gateway read (ARCHITECTURE §4: only active sessions are
//! honoured; logout and reuse detection delete the session).
//!
//! Auth writes a session as the Redis hash `<prefix>auth:s:<sid>` with fields `uid` and
//! `state` (`pending` | `active`); see `wharf_auth::sessions` for the whole layout. Readers
//! build the key with [`session_key`] from the same Redis key prefix, so the layout is written
//! down once.

use redis::aio::ConnectionManager;

/// The prefix of auth's session keys, under the deployment's Redis key prefix.
pub fn store_prefix(redis_key_prefix: &str) -> String {
    format!("{redis_key_prefix}auth:")
}

/// The key of session `session_id` under [`store_prefix`].
pub fn session_key(store_prefix: &str, session_id: &str) -> String {
    format!("{store_prefix}s:{session_id}")
}

/// Reads session state from Redis.
#[derive(Clone)]
pub struct ActiveSessions {
    redis: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for ActiveSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveSessions")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl ActiveSessions {
    /// `redis_key_prefix` is the deployment's (`redis.key_prefix`), not auth's store prefix.
    pub fn new(redis: ConnectionManager, redis_key_prefix: &str) -> Self {
        Self {
            redis,
            prefix: store_prefix(redis_key_prefix),
        }
    }

    /// Whether `session_id` is active and belongs to `user_id`. A pending, revoked, expired or
    /// foreign session is not.
    pub async fn is_active(
        &self,
        session_id: &str,
        user_id: &str,
    ) -> Result<bool, redis::RedisError> {
        let (uid, state): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(session_key(&self.prefix, session_id))
            .arg(&["uid", "state"])
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(state.as_deref() == Some("active") && uid.as_deref() == Some(user_id))
    }
}
