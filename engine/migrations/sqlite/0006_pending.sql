-- Events whose FHIR patient reference named nobody loaded yet. They are never
-- quarantined for it: every committing ingest moves the ones whose reference has since
-- resolved (through fhir_refs) into events, in the same transaction as its own aliases.
CREATE TABLE pending_events (
    record_key  INTEGER PRIMARY KEY,
    subject_ref INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    code_id     INTEGER NOT NULL,
    detail_id   INTEGER,
    status      INTEGER NOT NULL,
    start_time  INTEGER NOT NULL,
    end_time    INTEGER,
    value       REAL,
    run_id      INTEGER NOT NULL
);
CREATE INDEX pending_events_subject ON pending_events (subject_ref);

ALTER TABLE ingest_runs ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ingest_runs ADD COLUMN resolved INTEGER NOT NULL DEFAULT 0;
