-- The audit trail: an append-only, hash-linked log organised as an RFC 6962 Merkle tree
-- (see governance::audit::entry for the canonical encoding). Nothing in tidig updates
-- or deletes a row of audit_log or audit_checkpoints.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,      -- leaf index, from 0, no gaps
    at        TEXT    NOT NULL,        -- index copies of members of `entry`, for queries;
    principal TEXT    NOT NULL,        -- verification checks they match the entry
    action    TEXT    NOT NULL,
    outcome   TEXT    NOT NULL,
    subject   TEXT,
    entry     TEXT    NOT NULL,        -- the canonical encoding, as hashed
    leaf_hash BYTEA   NOT NULL UNIQUE, -- SHA-256(0x00 ‖ entry)
    prev_hash BYTEA   NOT NULL UNIQUE  -- the entry's `prev`: one successor per entry, never a fork
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_principal ON audit_log (principal);
CREATE INDEX audit_log_subject ON audit_log (subject) WHERE subject IS NOT NULL;

-- The one head row every append locks FOR UPDATE in the appending transaction.
CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    size      BIGINT  NOT NULL,
    last_hash BYTEA   NOT NULL,        -- leaf hash of entry size-1 (32 zero bytes when empty)
    frontier  BYTEA   NOT NULL         -- the compact range: perfect-subtree roots, 32 bytes each
);
INSERT INTO audit_head (id, size, last_hash, frontier) VALUES (1, 0, decode(repeat('00', 32), 'hex'), ''::bytea);

-- Signed checkpoints (C2SP tlog-checkpoint notes).
CREATE TABLE audit_checkpoints (
    size BIGINT PRIMARY KEY,
    root BYTEA   NOT NULL,
    note TEXT    NOT NULL,
    at   TEXT    NOT NULL
);

-- Facts recorded once when first seen (a rule-pack version, a key fingerprint, the
-- deployment settings), so a changed one is recorded when it changes.
CREATE TABLE audit_seen (
    kind  TEXT NOT NULL,
    value TEXT NOT NULL,
    seq   BIGINT NOT NULL,
    PRIMARY KEY (kind, value)
);
