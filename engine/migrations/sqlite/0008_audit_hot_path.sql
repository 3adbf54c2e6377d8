-- The audit log, reshaped for its hot paths (issue 12's benchmark).
--
-- 1. A random 32-byte key in a unique index costs one B-tree page written per appended
--    entry, which on a durable commit is most of its cost. The chain does not need it:
--    `seq` is the primary key (two entries can never take one place) and every entry
--    commits to its predecessor's hash inside its own encoding (`prev`). So `leaf_hash`
--    keeps no index and the redundant `prev_hash` copy goes.
-- 2. The query columns (time, principal, action, outcome, subject) are generated from
--    the entry by the database: they cannot be changed on their own, so they can never
--    disagree with what was hashed, and verification need not read them.
-- 3. Principals and persons are looked up through `audit_index`, which is filled behind
--    the log in sorted batches (at each checkpoint and when a command ends) instead of
--    one random B-tree page per entry in every append's commit; a query reads the
--    entries not yet indexed (seq >= audit_indexed.upto) directly.
--
-- SQLite cannot change columns in place: the old table is renamed, the new one created
-- under the final name and filled row for row (entries and hashes unchanged), all in
-- this migration's transaction.
DROP INDEX audit_log_at;
DROP INDEX audit_log_principal;
DROP INDEX audit_log_subject;
ALTER TABLE audit_log RENAME TO audit_log_v1;
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,     -- leaf index, from 0, no gaps
    entry     TEXT    NOT NULL,        -- the canonical encoding, as hashed
    leaf_hash BLOB    NOT NULL,        -- SHA-256(0x00 ‖ entry), for proofs
    at        TEXT    NOT NULL GENERATED ALWAYS AS (json_extract(entry, '$.at')) VIRTUAL,
    principal TEXT    NOT NULL GENERATED ALWAYS AS (json_extract(entry, '$.principal.id')) VIRTUAL,
    action    TEXT    NOT NULL GENERATED ALWAYS AS (json_extract(entry, '$.action')) VIRTUAL,
    outcome   TEXT    NOT NULL GENERATED ALWAYS AS (json_extract(entry, '$.outcome.kind')) VIRTUAL,
    subject   TEXT             GENERATED ALWAYS AS (json_extract(entry, '$.subject')) VIRTUAL
);
INSERT INTO audit_log (seq, entry, leaf_hash)
    SELECT seq, entry, leaf_hash FROM audit_log_v1 ORDER BY seq;
DROP TABLE audit_log_v1;
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE audit_index (
    kind  TEXT    NOT NULL,   -- 'principal' (the principal's id) or 'subject' (a pseudonym)
    value TEXT    NOT NULL,
    seq   INTEGER NOT NULL,
    PRIMARY KEY (kind, value, seq)
) WITHOUT ROWID;
CREATE TABLE audit_indexed (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    upto INTEGER NOT NULL     -- the entries with seq < upto are in audit_index
);
INSERT INTO audit_index (kind, value, seq)
    SELECT 'principal', principal, seq FROM audit_log
    UNION ALL
    SELECT 'subject', subject, seq FROM audit_log WHERE subject IS NOT NULL;
INSERT INTO audit_indexed (id, upto) SELECT 1, COALESCE(MAX(seq) + 1, 0) FROM audit_log;
