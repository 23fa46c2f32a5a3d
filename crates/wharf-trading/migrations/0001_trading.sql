-- The trading schema: accounts, instruments, positions, orders with their state machine and
-- history, trades, and an append-only audit of every balance and position change.
--
-- Money and quantities are integer minor units. The invariants live here as well as in code:
-- no negative cash or position, positive prices and quantities, only the declared order
-- transitions, audit rows that can never change.

CREATE TABLE accounts (
    id          uuid PRIMARY KEY,
    user_id     text NOT NULL UNIQUE,
    cash_minor  bigint NOT NULL DEFAULT 0 CHECK (cash_minor >= 0),
    currency    text NOT NULL DEFAULT 'USD',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE instruments (
    symbol           text PRIMARY KEY CHECK (symbol ~ '^[A-Z0-9]{1,12}$'),
    name             text NOT NULL,
    price_minor      bigint NOT NULL CHECK (price_minor > 0),
    price_updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO instruments (symbol, name, price_minor) VALUES
    ('WHRF', 'Wharf Holdings', 12500),
    ('ACME', 'Acme Corporation', 4210),
    ('BOLT', 'Bolt Energy', 987);

CREATE TABLE positions (
    account_id uuid NOT NULL REFERENCES accounts (id),
    instrument text NOT NULL REFERENCES instruments (symbol),
    quantity   bigint NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (account_id, instrument)
);

CREATE TABLE orders (
    id              uuid PRIMARY KEY,
    account_id      uuid NOT NULL REFERENCES accounts (id),
    instrument      text NOT NULL REFERENCES instruments (symbol),
    side            text NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity        bigint NOT NULL CHECK (quantity > 0),
    state           text NOT NULL CHECK (state IN ('NEW', 'FILLED', 'SETTLED', 'REJECTED')),
    price_minor     bigint NOT NULL DEFAULT 0 CHECK (price_minor >= 0),
    fee_minor       bigint NOT NULL DEFAULT 0 CHECK (fee_minor >= 0),
    reject_reason   text,
    idempotency_key text NOT NULL,
    -- SHA-256 of the request body: the same key with another body is refused.
    fingerprint     bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, idempotency_key)
);
CREATE INDEX orders_by_account ON orders (account_id, created_at DESC, id DESC);
-- Reconciliation: orders filled but not settled.
CREATE INDEX orders_filled ON orders (updated_at) WHERE state = 'FILLED';

CREATE TABLE order_transitions (
    id         bigserial PRIMARY KEY,
    order_id   uuid NOT NULL REFERENCES orders (id),
    from_state text,
    to_state   text NOT NULL,
    at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX order_transitions_by_order ON order_transitions (order_id, id);

-- NEW → FILLED → SETTLED, NEW → REJECTED; every state an order takes is recorded.
CREATE FUNCTION orders_state_machine() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.state <> 'NEW' THEN
            RAISE EXCEPTION 'an order starts NEW, not %', NEW.state USING ERRCODE = 'check_violation';
        END IF;
        INSERT INTO order_transitions (order_id, from_state, to_state) VALUES (NEW.id, NULL, 'NEW');
        RETURN NEW;
    END IF;
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        IF NOT ((OLD.state = 'NEW' AND NEW.state IN ('FILLED', 'REJECTED'))
                OR (OLD.state = 'FILLED' AND NEW.state = 'SETTLED')) THEN
            RAISE EXCEPTION 'order % cannot go from % to %', OLD.id, OLD.state, NEW.state
                USING ERRCODE = 'check_violation';
        END IF;
        INSERT INTO order_transitions (order_id, from_state, to_state) VALUES (NEW.id, OLD.state, NEW.state);
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER orders_state_machine_insert AFTER INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_state_machine();
CREATE TRIGGER orders_state_machine_update BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_state_machine();

CREATE TABLE trades (
    id             uuid PRIMARY KEY,
    order_id       uuid NOT NULL UNIQUE REFERENCES orders (id),
    account_id     uuid NOT NULL REFERENCES accounts (id),
    instrument     text NOT NULL,
    side           text NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity       bigint NOT NULL CHECK (quantity > 0),
    price_minor    bigint NOT NULL CHECK (price_minor > 0),
    notional_minor bigint NOT NULL CHECK (notional_minor > 0),
    fee_minor      bigint NOT NULL CHECK (fee_minor >= 0),
    -- The TradeExecuted event that carried it (reconciliation may re-drive it under a new id).
    event_id       uuid NOT NULL,
    executed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX trades_by_account ON trades (account_id, executed_at DESC, id DESC);

-- Every change to cash or a position, append-only: the balances can be rebuilt from it.
CREATE TABLE audit (
    id             bigserial PRIMARY KEY,
    account_id     uuid NOT NULL REFERENCES accounts (id),
    operation      text NOT NULL CHECK (operation IN ('DEPOSIT', 'WITHDRAW', 'BUY', 'SELL', 'FEE')),
    -- Cash change (signed), and position change (signed) for BUY / SELL.
    cash_delta     bigint NOT NULL,
    instrument     text,
    quantity_delta bigint NOT NULL DEFAULT 0,
    -- The order, trade or cash request behind the change.
    reference_id   text NOT NULL,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_by_account ON audit (account_id, id);

CREATE FUNCTION append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION append_only();

-- Deposit / Withdraw idempotency: the first result of a key is the answer to its retries.
CREATE TABLE cash_requests (
    account_id      uuid NOT NULL REFERENCES accounts (id),
    idempotency_key text NOT NULL,
    fingerprint     bytea NOT NULL,
    cash_after      bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, idempotency_key)
);

-- What reconciliation found and did.
CREATE TABLE reconciliation_log (
    id         bigserial PRIMARY KEY,
    invariant  text NOT NULL,
    subject    text NOT NULL,
    action     text NOT NULL,
    detail     text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
