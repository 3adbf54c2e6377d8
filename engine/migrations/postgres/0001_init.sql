-- tidig store, PostgreSQL. Integer keys everywhere: persons, codes and records are keyed by
-- 63-bit (keyed) hashes computed at the edge, so concurrent writers never coordinate ids.
-- Dates are days since 1970-01-01; event times are seconds since the epoch (UTC).

CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The id is the first 63 bits of the pseudonym, so a pseudonym is looked up by its id
-- (no second index).
CREATE TABLE persons (
    id         BIGINT PRIMARY KEY,
    pseudonym  TEXT    NOT NULL,
    scheme     TEXT    NOT NULL,
    birth_date BIGINT,
    sex        TEXT,
    death_date BIGINT
);

CREATE TABLE vault (
    person_id  BIGINT PRIMARY KEY,
    nonce      BYTEA    NOT NULL,
    ciphertext BYTEA    NOT NULL
);

CREATE TABLE codes (
    id     BIGINT PRIMARY KEY,
    system TEXT NOT NULL,
    code   TEXT NOT NULL
);

CREATE TABLE events (
    record_key BIGINT PRIMARY KEY,
    person_id  BIGINT NOT NULL,
    kind       BIGINT NOT NULL,
    code_id    BIGINT NOT NULL,
    detail_id  BIGINT,
    status     BIGINT NOT NULL,
    start_time BIGINT NOT NULL,
    end_time   BIGINT,
    value      DOUBLE PRECISION,
    run_id     BIGINT NOT NULL
);

CREATE TABLE residences (
    record_key    BIGINT PRIMARY KEY,
    person_id     BIGINT NOT NULL,
    valid_from    BIGINT NOT NULL,
    valid_to      BIGINT,
    municipality  TEXT    NOT NULL,
    postcode      TEXT,
    household_key BIGINT,
    run_id        BIGINT NOT NULL
);

CREATE TABLE relations (
    record_key BIGINT PRIMARY KEY,
    child_id   BIGINT NOT NULL,
    parent_id  BIGINT NOT NULL,
    relation   TEXT    NOT NULL,
    valid_from BIGINT,
    valid_to   BIGINT,
    run_id     BIGINT NOT NULL
);

CREATE TABLE fhir_refs (
    ref_key   BIGINT PRIMARY KEY,
    person_id BIGINT NOT NULL
);

CREATE TABLE protected_attributes (
    person_id BIGINT NOT NULL,
    attribute TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    PRIMARY KEY (person_id, attribute)
);

CREATE TABLE ingest_runs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file        TEXT    NOT NULL,
    sha256      TEXT    NOT NULL,
    format      TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    error       TEXT,
    started_at  TEXT    NOT NULL,
    finished_at TEXT,
    read        BIGINT NOT NULL DEFAULT 0,
    loaded      BIGINT NOT NULL DEFAULT 0,
    rejected    BIGINT NOT NULL DEFAULT 0,
    duplicate   BIGINT NOT NULL DEFAULT 0,
    skipped     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX ingest_runs_sha256 ON ingest_runs (sha256, status);

CREATE TABLE quarantine (
    sha256 TEXT    NOT NULL,
    line   BIGINT NOT NULL,
    field  TEXT    NOT NULL,
    reason TEXT    NOT NULL,
    file   TEXT    NOT NULL,
    run_id BIGINT NOT NULL,
    PRIMARY KEY (sha256, line, field)
);
