-- The stop switch (EU AI Act Art 14): whether scoring is stopped, why, by whom, since
-- when, and the audit entry that recorded it. One row, absent until first used (absent
-- = scoring runs). It lives in the store, not in a settings file, so a stop reaches
-- every replica and every command at once; a scoring run checks it inside the
-- transaction that writes its suggestions, under the same serialisation as the switch's
-- own change, so a run either committed before a stop or writes nothing.
CREATE TABLE scoring_switch (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    stopped   BOOLEAN NOT NULL,
    reason    TEXT NOT NULL,
    by_whom   TEXT NOT NULL,
    by_auth   TEXT NOT NULL,
    at        TEXT NOT NULL,
    audit_seq BIGINT NOT NULL
);
