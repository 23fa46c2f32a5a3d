-- What reconciliation found and did about registrations stuck PENDING.
CREATE TABLE reconciliation_log (
    id        bigserial PRIMARY KEY,
    invariant text NOT NULL,
    subject   text NOT NULL,
    action    text NOT NULL,
    detail    text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reconciliation_log_subject ON reconciliation_log (invariant, subject, at);
