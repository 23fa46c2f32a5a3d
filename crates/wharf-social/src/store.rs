//! The `social` schema: profiles, follows, feed items, trades counted for the rules and
//! achievements, and the queries behind the RPCs and consumers.

use sqlx::types::chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};
use uuid::Uuid;

/// A profile, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Profile {
    pub user_id: String,
    pub handle: String,
    pub display_name: String,
    pub bio: String,
    pub follower_count: i64,
    pub following_count: i64,
    pub created_at: DateTime<Utc>,
}

/// The columns of a [`Profile`] (of table alias `p`), as a literal for `concat!`.
macro_rules! profile_columns {
    () => {
        "p.user_id, p.handle, p.display_name, p.bio, p.follower_count, p.following_count, \
         p.created_at"
    };
}

/// A profile the registration saga asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProfile {
    pub user_id: String,
    pub handle: String,
    pub display_name: String,
    pub registration_event_id: Uuid,
}

/// What [`create_profile`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The profile was written.
    New(Profile),
    /// The user already had this profile (a redelivered or re-emitted registration).
    Existing(Profile),
    /// Another user holds the handle.
    HandleTaken,
}

/// The user's profile, if any.
pub async fn profile<'e>(
    executor: impl PgExecutor<'e>,
    user_id: &str,
) -> Result<Option<Profile>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        profile_columns!(),
        " FROM profiles p WHERE p.user_id = $1"
    ))
    .bind(user_id)
    .fetch_optional(executor)
    .await
}

/// Creates the profile of a registration, once per user.
///
/// Never fails on a conflict (safe behind a consumer's savepoint): `ON CONFLICT DO NOTHING`,
/// then the user's profile is read. A concurrent transaction creating the same user's profile
/// makes this one wait for its outcome, and the read (a new snapshot under READ COMMITTED)
/// then sees it; if the user still has none, the conflict was on the handle.
pub async fn create_profile(
    tx: &mut Transaction<'_, Postgres>,
    new: &NewProfile,
) -> Result<Created, sqlx::Error> {
    let inserted: Option<Profile> = sqlx::query_as(concat!(
        "INSERT INTO profiles AS p (user_id, handle, display_name, registration_event_id) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING ",
        profile_columns!()
    ))
    .bind(&new.user_id)
    .bind(&new.handle)
    .bind(&new.display_name)
    .bind(new.registration_event_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(profile) = inserted {
        return Ok(Created::New(profile));
    }
    Ok(match profile(&mut **tx, &new.user_id).await? {
        Some(existing) => Created::Existing(existing),
        None => Created::HandleTaken,
    })
}

/// Sets the user's display name and bio; `None` if the user has no profile.
pub async fn update_profile(
    pool: &PgPool,
    user_id: &str,
    display_name: &str,
    bio: &str,
) -> Result<Option<Profile>, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE profiles AS p SET display_name = $2, bio = $3, updated_at = now() \
         WHERE p.user_id = $1 RETURNING ",
        profile_columns!()
    ))
    .bind(user_id)
    .bind(display_name)
    .bind(bio)
    .fetch_optional(pool)
    .await
}

/// What [`follow`] and [`unfollow`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowOutcome {
    /// The follow was added (or removed).
    Changed,
    /// It already was as asked: nothing changed.
    Unchanged,
    /// The caller has no profile (its registration has not completed).
    NoFollower,
    /// The profile to (un)follow does not exist.
    NoFollowee,
}

/// Locks both profiles in a fixed order (so that A follows B and B follows A at once never
/// deadlock) and says which are missing.
async fn lock_pair(
    tx: &mut Transaction<'_, Postgres>,
    follower: &str,
    followee: &str,
) -> Result<Option<FollowOutcome>, sqlx::Error> {
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT user_id FROM profiles WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE",
    )
    .bind(vec![follower.to_owned(), followee.to_owned()])
    .fetch_all(&mut **tx)
    .await?;
    if !found.iter().any(|id| id == follower) {
        return Ok(Some(FollowOutcome::NoFollower));
    }
    if !found.iter().any(|id| id == followee) {
        return Ok(Some(FollowOutcome::NoFollowee));
    }
    Ok(None)
}

/// Adjusts both counters of a follow that was added (`+1`) or removed (`-1`).
async fn count(
    tx: &mut Transaction<'_, Postgres>,
    follower: &str,
    followee: &str,
    delta: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE profiles SET \
             following_count = following_count + CASE WHEN user_id = $1 THEN $3 ELSE 0 END, \
             follower_count = follower_count + CASE WHEN user_id = $2 THEN $3 ELSE 0 END \
         WHERE user_id IN ($1, $2)",
    )
    .bind(follower)
    .bind(followee)
    .bind(delta)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `follower` follows `followee`, once; the counters move with the follow.
pub async fn follow(
    pool: &PgPool,
    follower: &str,
    followee: &str,
) -> Result<FollowOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if let Some(missing) = lock_pair(&mut tx, follower, followee).await? {
        return Ok(missing);
    }
    let added = sqlx::query(
        "INSERT INTO follows (followee_id, follower_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(followee)
    .bind(follower)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if added == 0 {
        return Ok(FollowOutcome::Unchanged);
    }
    count(&mut tx, follower, followee, 1).await?;
    tx.commit().await?;
    Ok(FollowOutcome::Changed)
}

/// `follower` stops following `followee`; nothing to do if it did not.
pub async fn unfollow(
    pool: &PgPool,
    follower: &str,
    followee: &str,
) -> Result<FollowOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if let Some(missing) = lock_pair(&mut tx, follower, followee).await? {
        return Ok(missing);
    }
    let removed = sqlx::query("DELETE FROM follows WHERE followee_id = $1 AND follower_id = $2")
        .bind(followee)
        .bind(follower)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if removed == 0 {
        return Ok(FollowOutcome::Unchanged);
    }
    count(&mut tx, follower, followee, -1).await?;
    tx.commit().await?;
    Ok(FollowOutcome::Changed)
}

/// Where a list page ends: the last row's time and its id (a user id or a trade id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: String,
}

/// A profile in a follow list, with when the follow began (its cursor).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Listed {
    #[sqlx(flatten)]
    pub profile: Profile,
    pub followed_at: DateTime<Utc>,
}

/// Which side of the follows a list is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Who follows the user.
    Followers,
    /// Whom the user follows.
    Following,
}

/// Up to `limit` profiles on one side of `user_id`'s follows, newest follow first, after
/// `after`.
pub async fn follow_list(
    pool: &PgPool,
    direction: Direction,
    user_id: &str,
    after: Option<&Cursor>,
    limit: i64,
) -> Result<Vec<Listed>, sqlx::Error> {
    // `(at, id) < (after)` with no cursor is everything: every stored time is before
    // 'infinity'.
    let statement = match direction {
        Direction::Followers => concat!(
            "SELECT ",
            profile_columns!(),
            ", f.created_at AS followed_at FROM follows f \
             JOIN profiles p ON p.user_id = f.follower_id \
             WHERE f.followee_id = $1 \
               AND (f.created_at, f.follower_id) < (coalesce($2, 'infinity'::timestamptz), coalesce($3, '')) \
             ORDER BY f.created_at DESC, f.follower_id DESC LIMIT $4"
        ),
        Direction::Following => concat!(
            "SELECT ",
            profile_columns!(),
            ", f.created_at AS followed_at FROM follows f \
             JOIN profiles p ON p.user_id = f.followee_id \
             WHERE f.follower_id = $1 \
               AND (f.created_at, f.followee_id) < (coalesce($2, 'infinity'::timestamptz), coalesce($3, '')) \
             ORDER BY f.created_at DESC, f.followee_id DESC LIMIT $4"
        ),
    };
    sqlx::query_as(statement)
        .bind(user_id)
        .bind(after.map(|cursor| cursor.at))
        .bind(after.map(|cursor| cursor.id.as_str()))
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// A feed item, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FeedItem {
    pub id: Uuid,
    pub trade_id: Uuid,
    pub actor_user_id: String,
    pub kind: String,
    pub text: String,
    pub occurred_at: DateTime<Utc>,
}

/// A trade to put in its trader's followers' feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedTrade {
    pub trade_id: Uuid,
    pub actor_user_id: String,
    pub kind: &'static str,
    pub text: String,
    pub occurred_at: DateTime<Utc>,
}

/// Writes one item per follower of the trade's actor, with one set-based statement; a
/// follower who already has the trade keeps their item. Returns the items written.
///
/// The first fan-out of a trade claims its `feed_trades` row and inserts the items without a
/// conflict check: none can exist, since items are only ever written with that row, in one
/// transaction. A trade fanned out before (a re-drive under a new event id) is written with
/// `ON CONFLICT DO NOTHING`, reaching only those who followed since. Two transactions fanning
/// out one trade at once meet on its row: the second waits for the first, then takes the
/// second path (or the first, if the first rolled back).
pub async fn fan_out(
    tx: &mut Transaction<'_, Postgres>,
    trade: &FeedTrade,
) -> Result<u64, sqlx::Error> {
    let claimed = sqlx::query(
        "INSERT INTO feed_trades (trade_id, actor_user_id) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING",
    )
    .bind(trade.trade_id)
    .bind(&trade.actor_user_id)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    let statement = if claimed {
        "INSERT INTO feed_items (follower_id, trade_id, actor_user_id, kind, text, occurred_at) \
         SELECT f.follower_id, $2, $1, $3, $4, $5 FROM follows f WHERE f.followee_id = $1"
    } else {
        "INSERT INTO feed_items (follower_id, trade_id, actor_user_id, kind, text, occurred_at) \
         SELECT f.follower_id, $2, $1, $3, $4, $5 FROM follows f WHERE f.followee_id = $1 \
         ON CONFLICT DO NOTHING"
    };
    let written = sqlx::query(statement)
        .bind(&trade.actor_user_id)
        .bind(trade.trade_id)
        .bind(trade.kind)
        .bind(&trade.text)
        .bind(trade.occurred_at)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(written)
}

/// Up to `limit` items of `user_id`'s feed, newest trade first, after `after` (whose id is a
/// trade id).
pub async fn feed(
    pool: &PgPool,
    user_id: &str,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<FeedItem>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, trade_id, actor_user_id, kind, text, occurred_at FROM feed_items \
         WHERE follower_id = $1 \
           AND (occurred_at, trade_id) < (coalesce($2, 'infinity'::timestamptz), \
                                          coalesce($3, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid)) \
         ORDER BY occurred_at DESC, trade_id DESC LIMIT $4",
    )
    .bind(user_id)
    .bind(after.map(|(at, _)| at))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// An achievement a user holds.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Unlocked {
    pub achievement: String,
    pub title: String,
    pub trade_id: Uuid,
    pub unlocked_at: DateTime<Utc>,
}

/// The user's achievements, first unlocked first.
pub async fn achievements(pool: &PgPool, user_id: &str) -> Result<Vec<Unlocked>, sqlx::Error> {
    sqlx::query_as(
        "SELECT achievement, title, trade_id, unlocked_at FROM achievements \
         WHERE user_id = $1 ORDER BY unlocked_at, achievement",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await
}
