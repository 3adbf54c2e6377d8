-- Research runs under secondary-use permits. A run's results (aggregates only) are
-- released only if, in the transaction that records them, the permit it started under
-- is still the permit's newest version, not revoked and valid that day; otherwise the
-- run is recorded as withheld, with the reason, and nothing of it is kept.
CREATE TABLE research_runs (
    id             TEXT   PRIMARY KEY,
    permit_id      TEXT   NOT NULL,
    permit_version BIGINT NOT NULL,
    principal      TEXT   NOT NULL,
    kind           TEXT   NOT NULL,
    as_of          BIGINT NOT NULL,
    state          TEXT   NOT NULL,
    reason         TEXT,
    started_at     TEXT   NOT NULL,
    finished_at    TEXT   NOT NULL,
    results        TEXT,
    audit_seq      BIGINT NOT NULL
);
