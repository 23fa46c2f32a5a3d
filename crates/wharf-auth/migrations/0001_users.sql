-- Users of the auth service, and the idempotency record of registrations.
--
-- A user is PENDING from registration until social answers the registration saga: ACTIVE (may
-- log in) or REJECTED (compensated: the email is free again). No other transition exists, and
-- the database refuses one as firmly as the code does.

CREATE TABLE users (
    id                    uuid PRIMARY KEY,
    email                 text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    -- The lowercased email: what logins look up and what must be unique among live users.
    email_key             text NOT NULL CHECK (email_key = lower(email)),
    password_hash         text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    handle                text NOT NULL,
    display_name          text NOT NULL,
    status                text NOT NULL DEFAULT 'PENDING'
                          CHECK (status IN ('PENDING', 'ACTIVE', 'REJECTED')),
    status_reason         text,
    roles                 text[] NOT NULL DEFAULT '{user}',
    -- The auth.user.registered event that started the saga; replies name it.
    registration_event_id uuid NOT NULL UNIQUE,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- A rejected registration frees its email; a live one holds it.
CREATE UNIQUE INDEX users_email_live ON users (email_key) WHERE status <> 'REJECTED';
-- Reconciliation looks for users stuck in PENDING.
CREATE INDEX users_pending ON users (created_at) WHERE status = 'PENDING';

CREATE FUNCTION users_status_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status
       AND NOT (OLD.status = 'PENDING' AND NEW.status IN ('ACTIVE', 'REJECTED')) THEN
        RAISE EXCEPTION 'user % cannot go from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER users_status_transition
    BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION users_status_transition();

-- Register's idempotency keys: a retry with the same key gets the same user; the same key with
-- a different request is refused. The fingerprint covers the non-secret fields; the password of
-- a retry is checked against the stored hash.
CREATE TABLE registrations (
    idempotency_key text PRIMARY KEY CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    fingerprint     bytea NOT NULL,
    user_id         uuid NOT NULL REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now()
);
