-- The fee ledger: one entry per executed trade, written by the `revenue-ledger` consumer of
-- `trading.trade.executed` in the same transaction as its inbox row and the `revenue.fee.recorded`
-- event it emits.
--
-- Append-only: an entry is never changed or removed (a correction would be a new entry). A
-- trade is recorded once, whatever event carried it: `trade_id` is unique, so a re-driven trade
-- (its event published again under a new event id) finds its entry instead of adding one, and
-- `event_id` is unique, so one event never becomes two entries. Money is integer minor units.

CREATE TABLE ledger_entries (
    -- UUIDv7, drawn when the entry is written.
    id                uuid PRIMARY KEY,
    -- The TradeExecuted event that produced the entry (the first one, for a re-driven trade).
    event_id          uuid NOT NULL UNIQUE,
    trade_id          uuid NOT NULL UNIQUE,
    order_id          uuid NOT NULL,
    account_id        uuid NOT NULL,
    user_id           text NOT NULL CHECK (user_id <> '' AND length(user_id) <= 200),
    instrument        text NOT NULL CHECK (instrument <> '' AND length(instrument) <= 32),
    fee_minor         bigint NOT NULL CHECK (fee_minor >= 0),
    currency          text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- When the trade executed (the event's occurred_at): what the revenue reports group by.
    trade_executed_at timestamptz NOT NULL,
    -- When the ledger learnt of it: what the entry listing pages by.
    recorded_at       timestamptz NOT NULL DEFAULT now()
);

-- GetRevenue: a range of execution times, for every instrument or for one. The included
-- columns let both reports read the index alone.
CREATE INDEX ledger_entries_executed
    ON ledger_entries (trade_executed_at) INCLUDE (instrument, fee_minor, currency);
CREATE INDEX ledger_entries_instrument_executed
    ON ledger_entries (instrument, trade_executed_at) INCLUDE (fee_minor, currency);
-- ListLedgerEntries: newest first, keyset pagination on (recorded_at, id).
CREATE INDEX ledger_entries_recorded ON ledger_entries (recorded_at, id);

CREATE FUNCTION ledger_entries_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
CREATE TRIGGER ledger_entries_no_truncate
    BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only();
