-- Caseworkers' decisions: the only way a suggestion leaves `open`. One per suggestion
-- (the unique key is the backstop when two servers decide at once); a client's
-- idempotency key, per principal, makes a repeated request return the first answer.
-- The note is stored for the case file and never indexed.
CREATE TABLE decisions (
    id              TEXT PRIMARY KEY,
    suggestion_id   TEXT NOT NULL UNIQUE REFERENCES suggestions (id),
    unit            TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    reason_code     TEXT NOT NULL,
    note            TEXT NOT NULL,
    decided_by      TEXT NOT NULL,
    decided_auth    TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_digest  TEXT NOT NULL,
    decided_at      TEXT NOT NULL,
    audit_seq       BIGINT NOT NULL,
    UNIQUE (decided_by, idempotency_key)
);

-- A unit's open suggestions in listing order (most urgent first: `high` sorts after
-- `elevated`, so band descending), read in index order a page at a time.
CREATE INDEX suggestions_unit_queue
    ON suggestions (unit, status, band DESC, score DESC, created_at, id);

-- The order suggestions were written in, for watchers: assigned inside the serialised
-- writing transaction, so it grows in commit order (a run's `created_at` is stamped
-- before it takes the write lock, so two runs could commit out of stamp order).
-- Suggestions written before this column existed are 0: never "new" to a watcher.
ALTER TABLE suggestions ADD COLUMN write_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX suggestions_unit_written ON suggestions (unit, write_seq);
