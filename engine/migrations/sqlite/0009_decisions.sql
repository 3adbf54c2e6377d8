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

-- Listing a unit's open suggestions, most urgent first, and watching for new ones.
CREATE INDEX suggestions_unit_open ON suggestions (unit, status, created_at);
