-- The transactional outbox: events written in the same transaction as the business rows that
-- produced them, published later by the relay, deleted only after JetStream acknowledged them.
CREATE TABLE outbox (
    -- Order of commit within an ordering key (enqueue serialises producers per key).
    id           BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     UUID        NOT NULL UNIQUE,
    -- The contract's subject, without any namespace prefix.
    subject      TEXT        NOT NULL CHECK (subject <> ''),
    event_type   TEXT        NOT NULL CHECK (event_type <> ''),
    ordering_key TEXT        NOT NULL,
    -- hash(ordering_key) mod 64: relays lease buckets, so one key is only ever published by one
    -- relay at a time, in id order.
    bucket       SMALLINT    NOT NULL CHECK (bucket >= 0 AND bucket < 64),
    payload      BYTEA       NOT NULL,
    traceparent  TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    attempts     INTEGER     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error   TEXT
);

CREATE INDEX outbox_bucket_id ON outbox (bucket, id);
