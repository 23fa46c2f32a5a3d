//! Sessions and refresh-token families in Redis.
//!
//! Keys, under the configured prefix:
//! - `s:<sid>` — a hash: `uid`, `state` (`pending` | `active`), `rt` (digest of the current
//!   refresh token), `roles`, `exp` (absolute expiry, Unix seconds). Expires by itself: after
//!   the pending TTL while pending, at `exp` once active.
//! - `rt:<digest>` — the session a refresh token belongs to. Written for every token of the
//!   family and kept until the family's expiry, so a rotated token is recognised when replayed.
//! - `u:<uid>` — the user's session ids, for `LogoutAll`.
//!
//! A session *is* its refresh-token family: revoking one deletes `s:<sid>`, after which every
//! token of the family (the newest included) finds no active session. Each multi-key step is
//! one Lua script, so concurrent calls see it whole. The scripts build the `s:`/`u:` keys from
//! the prefix, which ties all keys to one Redis (not Redis Cluster slots).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;

/// What the session store can fail with; every case is `UNAVAILABLE` to a caller.
#[derive(Debug, thiserror::Error)]
#[error("the session store is unavailable: {0}")]
pub struct StoreError(#[from] redis::RedisError);

/// An active session, as a refresh or an authenticated call sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub session_id: String,
    pub user_id: String,
    pub roles: Vec<String>,
    /// Absolute expiry, Unix seconds.
    pub expires_at: u64,
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: it is replaced by the new one.
    Rotated(Session),
    /// No such token, or its session is gone (expired, logged out, revoked).
    Unknown,
    /// A rotated token came back: the whole family has just been revoked.
    Reused { session_id: String, user_id: String },
}

const PROMOTE: &str = r"
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
local exp = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'active')
redis.call('EXPIREAT', KEYS[1], exp)
redis.call('SET', KEYS[2], ARGV[2], 'EXAT', exp)
redis.call('SADD', KEYS[3], ARGV[2])
local ttl = redis.call('TTL', KEYS[3])
if ttl < 0 then
  redis.call('EXPIREAT', KEYS[3], exp)
else
  redis.call('EXPIREAT', KEYS[3], exp, 'GT')
end
return 1
";

const ROTATE: &str = r"
local sid = redis.call('GET', KEYS[1])
if not sid then return { 'unknown' } end
local session = ARGV[1] .. 's:' .. sid
local fields = redis.call('HMGET', session, 'state', 'rt', 'uid', 'roles', 'exp')
if fields[1] ~= 'active' then return { 'unknown' } end
if fields[2] ~= ARGV[2] then
  redis.call('DEL', session)
  redis.call('SREM', ARGV[1] .. 'u:' .. fields[3], sid)
  return { 'reused', sid, fields[3] }
end
redis.call('HSET', session, 'rt', ARGV[3])
redis.call('SET', ARGV[1] .. 'rt:' .. ARGV[3], sid, 'EXAT', tonumber(fields[5]))
return { 'rotated', sid, fields[3], fields[4], fields[5] }
";

const REVOKE: &str = r"
local uid = redis.call('HGET', KEYS[1], 'uid')
if uid ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return 1
";

const REVOKE_ALL: &str = r"
local sids = redis.call('SMEMBERS', KEYS[1])
local revoked = 0
for _, sid in ipairs(sids) do
  local session = ARGV[1] .. 's:' .. sid
  if redis.call('HGET', session, 'uid') == ARGV[2] then
    if redis.call('HGET', session, 'state') == 'active' then revoked = revoked + 1 end
    redis.call('DEL', session)
  end
end
redis.call('DEL', KEYS[1])
return revoked
";

/// The Redis side of sessions.
#[derive(Clone)]
pub struct Sessions {
    redis: ConnectionManager,
    prefix: String,
    promote: redis::Script,
    rotate: redis::Script,
    revoke: redis::Script,
    revoke_all: redis::Script,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Sessions {
    /// Keys go under `<prefix>`, e.g. `wharf:auth:`.
    pub fn new(redis: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            redis,
            prefix: prefix.into(),
            promote: redis::Script::new(PROMOTE),
            rotate: redis::Script::new(ROTATE),
            revoke: redis::Script::new(REVOKE),
            revoke_all: redis::Script::new(REVOKE_ALL),
        }
    }

    pub fn session_key(&self, session_id: &str) -> String {
        wharf_tokens::session::session_key(&self.prefix, session_id)
    }

    fn token_key(&self, digest: &str) -> String {
        format!("{}rt:{digest}", self.prefix)
    }

    fn user_key(&self, user_id: &str) -> String {
        format!("{}u:{user_id}", self.prefix)
    }

    /// Login step 1: the session exists but is not honoured; it vanishes after `ttl` unless
    /// promoted.
    pub async fn create_pending(
        &self,
        session: &Session,
        refresh_digest: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.session_key(&session.session_id);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        redis::pipe()
            .atomic()
            .hset_multiple(
                &key,
                &[
                    ("uid", session.user_id.clone()),
                    ("state", "pending".to_owned()),
                    ("rt", refresh_digest.to_owned()),
                    ("roles", session.roles.join(",")),
                    ("exp", session.expires_at.to_string()),
                ],
            )
            .ignore()
            .pexpire(&key, i64::try_from(ttl_ms).unwrap_or(i64::MAX))
            .ignore()
            .query_async::<()>(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    /// Login step 3, after the `logged_in` ack: the session becomes active until its absolute
    /// expiry and its refresh token becomes usable. `false` when the pending session is gone
    /// (its TTL elapsed): the login must fail.
    pub async fn promote(
        &self,
        session: &Session,
        refresh_digest: &str,
    ) -> Result<bool, StoreError> {
        let promoted: i64 = self
            .promote
            .key(self.session_key(&session.session_id))
            .key(self.token_key(refresh_digest))
            .key(self.user_key(&session.user_id))
            .arg(session.expires_at)
            .arg(&session.session_id)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(promoted == 1)
    }

    /// Compensation: removes a session that must not exist (its login failed).
    pub async fn delete(&self, session_id: &str) -> Result<(), StoreError> {
        let _: i64 = redis::cmd("DEL")
            .arg(self.session_key(session_id))
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    /// The session if it is active and belongs to `user_id`.
    pub async fn active(
        &self,
        session_id: &str,
        user_id: &str,
    ) -> Result<Option<Session>, StoreError> {
        let (uid, state, roles, exp): (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<u64>,
        ) = redis::cmd("HMGET")
            .arg(self.session_key(session_id))
            .arg(&["uid", "state", "roles", "exp"])
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(match (uid, state) {
            (Some(uid), Some(state)) if state == "active" && uid == user_id => Some(Session {
                session_id: session_id.to_owned(),
                user_id: uid,
                roles: split_roles(roles.as_deref()),
                expires_at: exp.unwrap_or(0),
            }),
            _ => None,
        })
    }

    /// Presents a refresh token (by digest) and, if it is the family's current one, replaces
    /// it with `new_digest`.
    pub async fn rotate(&self, presented: &str, new_digest: &str) -> Result<Rotation, StoreError> {
        let reply: Vec<String> = self
            .rotate
            .key(self.token_key(presented))
            .arg(&self.prefix)
            .arg(presented)
            .arg(new_digest)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(match reply.as_slice() {
            [outcome, sid, uid, roles, exp] if outcome == "rotated" => Rotation::Rotated(Session {
                session_id: sid.clone(),
                user_id: uid.clone(),
                roles: split_roles(Some(roles)),
                expires_at: exp.parse().unwrap_or(0),
            }),
            [outcome, sid, uid] if outcome == "reused" => Rotation::Reused {
                session_id: sid.clone(),
                user_id: uid.clone(),
            },
            _ => Rotation::Unknown,
        })
    }

    /// Revokes one session of `user_id`; `false` if it was not theirs or already gone.
    pub async fn revoke(&self, session_id: &str, user_id: &str) -> Result<bool, StoreError> {
        let revoked: i64 = self
            .revoke
            .key(self.session_key(session_id))
            .key(self.user_key(user_id))
            .arg(user_id)
            .arg(session_id)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(revoked == 1)
    }

    /// Revokes every session of `user_id`; returns how many were active.
    pub async fn revoke_all(&self, user_id: &str) -> Result<u32, StoreError> {
        let revoked: u32 = self
            .revoke_all
            .key(self.user_key(user_id))
            .arg(&self.prefix)
            .arg(user_id)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(revoked)
    }

    /// The raw state of a session key (`pending`, `active`, or `None`), for tests and tools.
    pub async fn state(&self, session_id: &str) -> Result<Option<String>, StoreError> {
        let state: Option<String> = redis::cmd("HGET")
            .arg(self.session_key(session_id))
            .arg("state")
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(state)
    }
}

fn split_roles(roles: Option<&str>) -> Vec<String> {
    roles
        .unwrap_or_default()
        .split(',')
        .filter(|role| !role.is_empty())
        .map(str::to_owned)
        .collect()
}
