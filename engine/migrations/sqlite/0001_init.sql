-- tidig store, SQLite. Integer keys everywhere: persons, codes and records are keyed by
-- 63-bit (keyed) hashes computed at the edge, so concurrent writers never coordinate ids.
-- Dates are days since 1970-01-01; event times are seconds since the epoch (UTC).

CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The id is the first 63 bits of the pseudonym, so a pseudonym is looked up by its id
-- (no second index).
CREATE TABLE persons (
    id         INTEGER PRIMARY KEY,
    pseudonym  TEXT    NOT NULL,
    scheme     TEXT    NOT NULL,
    birth_date INTEGER,
    sex        TEXT,
    death_date INTEGER
);

CREATE TABLE vault (
    person_id  INTEGER PRIMARY KEY,
    nonce      BLOB    NOT NULL,
    ciphertext BLOB    NOT NULL
);

CREATE TABLE codes (
    id     INTEGER PRIMARY KEY,
    system TEXT NOT NULL,
    code   TEXT NOT NULL
);

-- Events are appended in rowid order; deduplication goes through the (much smaller)
-- unique index on record_key, which stays in the page cache where a random-keyed table
-- would not.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    record_key INTEGER NOT NULL UNIQUE,
    person_id  INTEGER NOT NULL,
    kind       INTEGER NOT NULL,
    code_id    INTEGER NOT NULL,
    detail_id  INTEGER,
    status     INTEGER NOT NULL,
    start_time INTEGER NOT NULL,
    end_time   INTEGER,
    value      REAL,
    run_id     INTEGER NOT NULL
);

CREATE TABLE residences (
    record_key    INTEGER PRIMARY KEY,
    person_id     INTEGER NOT NULL,
    valid_from    INTEGER NOT NULL,
    valid_to      INTEGER,
    municipality  TEXT    NOT NULL,
    postcode      TEXT,
    household_key INTEGER,
    run_id        INTEGER NOT NULL
);

CREATE TABLE relations (
    record_key INTEGER PRIMARY KEY,
    child_id   INTEGER NOT NULL,
    parent_id  INTEGER NOT NULL,
    relation   TEXT    NOT NULL,
    valid_from INTEGER,
    valid_to   INTEGER,
    run_id     INTEGER NOT NULL
);

CREATE TABLE fhir_refs (
    ref_key   INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL
);

CREATE TABLE protected_attributes (
    person_id INTEGER NOT NULL,
    attribute TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    PRIMARY KEY (person_id, attribute)
);

CREATE TABLE ingest_runs (
    id          INTEGER PRIMARY KEY,
    file        TEXT    NOT NULL,
    sha256      TEXT    NOT NULL,
    format      TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    error       TEXT,
    started_at  TEXT    NOT NULL,
    finished_at TEXT,
    read        INTEGER NOT NULL DEFAULT 0,
    loaded      INTEGER NOT NULL DEFAULT 0,
    rejected    INTEGER NOT NULL DEFAULT 0,
    duplicate   INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX ingest_runs_sha256 ON ingest_runs (sha256, status);

CREATE TABLE quarantine (
    sha256 TEXT    NOT NULL,
    line   INTEGER NOT NULL,
    field  TEXT    NOT NULL,
    reason TEXT    NOT NULL,
    file   TEXT    NOT NULL,
    run_id INTEGER NOT NULL,
    PRIMARY KEY (sha256, line, field)
);
