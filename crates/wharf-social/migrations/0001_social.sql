-- The social schema: profiles (made by the registration saga), follows, the trade feed and
-- achievements. Every table is social's own: trades arrive as events carrying their full
-- payload, and no query ever reads another service's schema.
--
-- User ids are the token subjects and event user ids as text (auth issues UUIDs; nothing here
-- depends on that).

-- One profile per user, created by the `social-registration` consumer of `auth.user.registered`
-- in the same transaction as its `social.profile.created` reply. Handles are unique and never
-- released, so a re-emitted registration always gets the same answer.
CREATE TABLE profiles (
    user_id               text PRIMARY KEY CHECK (user_id <> '' AND length(user_id) <= 200),
    handle                text NOT NULL UNIQUE CHECK (handle ~ '^[a-z0-9_]{3,30}$'),
    display_name          text NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 64),
    bio                   text NOT NULL DEFAULT '' CHECK (char_length(bio) <= 280),
    -- Kept by Follow / Unfollow in the transaction that adds or removes the follow.
    follower_count        bigint NOT NULL DEFAULT 0 CHECK (follower_count >= 0),
    following_count       bigint NOT NULL DEFAULT 0 CHECK (following_count >= 0),
    -- The `auth.user.registered` event that created the profile (the first, if re-emitted).
    registration_event_id uuid NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- Who follows whom. The primary key makes Follow idempotent and is what a trade's fan-out
-- reads (every follower of one trader).
CREATE TABLE follows (
    followee_id text NOT NULL REFERENCES profiles (user_id),
    follower_id text NOT NULL REFERENCES profiles (user_id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (followee_id, follower_id),
    CHECK (followee_id <> follower_id)
);
-- ListFollowers and ListFollowing: newest follow first, keyset pagination.
CREATE INDEX follows_followers_recent ON follows (followee_id, created_at, follower_id);
CREATE INDEX follows_following_recent ON follows (follower_id, created_at, followee_id);

-- One item per (follower, trade), written by the `social-feed` consumer in one INSERT … SELECT
-- from `follows`. The primary key absorbs duplicates and re-driven trades (same trade, new
-- event id). No foreign keys: the fan-out is the hot path, and the rows come from `follows`.
CREATE TABLE feed_items (
    follower_id   text NOT NULL,
    trade_id      uuid NOT NULL,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    actor_user_id text NOT NULL,
    kind          text NOT NULL,
    text          text NOT NULL,
    -- When the trade executed: what the feed is ordered by.
    occurred_at   timestamptz NOT NULL,
    PRIMARY KEY (follower_id, trade_id)
);
-- GetFeed: newest first, keyset pagination on (occurred_at, trade_id) within one follower.
CREATE INDEX feed_items_newest ON feed_items (follower_id, occurred_at, trade_id);

-- The trades each user made, once per trade (whatever event carried it): what the
-- gamification rules count, so duplicates and out-of-order delivery change nothing.
CREATE TABLE user_trades (
    user_id        text NOT NULL CHECK (user_id <> '' AND length(user_id) <= 200),
    trade_id       uuid NOT NULL,
    notional_minor bigint NOT NULL,
    executed_at    timestamptz NOT NULL,
    PRIMARY KEY (user_id, trade_id)
);

-- Achievements unlocked, each at most once per user.
CREATE TABLE achievements (
    user_id     text NOT NULL,
    achievement text NOT NULL,
    title       text NOT NULL,
    -- The trade whose arrival met the rule.
    trade_id    uuid NOT NULL,
    unlocked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, achievement)
);
