-- The inbox: one row per (consumer, event) applied. Inserted in the same transaction as the
-- consumer's effect, so an event is applied at most once per consumer, however often it is
-- delivered.
CREATE TABLE inbox (
    consumer     TEXT        NOT NULL CHECK (consumer <> ''),
    event_id     UUID        NOT NULL,
    subject      TEXT        NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

CREATE INDEX inbox_processed_at ON inbox (processed_at);
