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
ALTER TABLE audit_log
    DROP CONSTRAINT audit_log_leaf_hash_key,
    DROP COLUMN prev_hash,
    DROP COLUMN at,
    DROP COLUMN principal,
    DROP COLUMN action,
    DROP COLUMN outcome,
    DROP COLUMN subject;
ALTER TABLE audit_log
    ADD COLUMN at        TEXT NOT NULL GENERATED ALWAYS AS (entry::jsonb ->> 'at') STORED,
    ADD COLUMN principal TEXT NOT NULL GENERATED ALWAYS AS (entry::jsonb -> 'principal' ->> 'id') STORED,
    ADD COLUMN action    TEXT NOT NULL GENERATED ALWAYS AS (entry::jsonb ->> 'action') STORED,
    ADD COLUMN outcome   TEXT NOT NULL GENERATED ALWAYS AS (entry::jsonb -> 'outcome' ->> 'kind') STORED,
    ADD COLUMN subject   TEXT          GENERATED ALWAYS AS (entry::jsonb ->> 'subject') STORED;
-- (The old indexes went with their columns.)
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE audit_index (
    kind  TEXT   NOT NULL,    -- 'principal' (the principal's id) or 'subject' (a pseudonym)
    value TEXT   NOT NULL,
    seq   BIGINT NOT NULL,
    PRIMARY KEY (kind, value, seq)
);
CREATE TABLE audit_indexed (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    upto BIGINT  NOT NULL     -- the entries with seq < upto are in audit_index
);
INSERT INTO audit_index (kind, value, seq)
    SELECT 'principal', principal, seq FROM audit_log
    UNION ALL
    SELECT 'subject', subject, seq FROM audit_log WHERE subject IS NOT NULL;
INSERT INTO audit_indexed (id, upto) SELECT 1, COALESCE(MAX(seq) + 1, 0) FROM audit_log;
