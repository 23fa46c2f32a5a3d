-- The trades the `social-feed` consumer has fanned out, one row each, written in the same
-- transaction as the trade's feed items. A trade's first fan-out claims its row here (one
-- `ON CONFLICT DO NOTHING` row) and then writes the items with a plain `INSERT … SELECT`: no
-- item of a trade without a row can exist, so none of its 10,000 rows needs the per-row
-- conflict check (speculative insertion costs a third more WAL records and half again the
-- buffer work per row). A trade seen again (re-driven under a new event id) finds its row and
-- falls back to `ON CONFLICT DO NOTHING`, so only followers added since get the item.
CREATE TABLE feed_trades (
    trade_id      uuid PRIMARY KEY,
    actor_user_id text NOT NULL,
    fanned_out_at timestamptz NOT NULL DEFAULT now()
);

-- Trades fanned out before this table existed: their items are already there.
INSERT INTO feed_trades (trade_id, actor_user_id)
SELECT DISTINCT ON (trade_id) trade_id, actor_user_id FROM feed_items ORDER BY trade_id;
