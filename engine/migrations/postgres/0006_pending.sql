-- Events whose FHIR patient reference named nobody loaded yet. They are never
-- quarantined for it: every committing ingest moves the ones whose reference has since
-- resolved (through fhir_refs) into events, in the same transaction as its own aliases.
CREATE TABLE pending_events (
    record_key  BIGINT PRIMARY KEY,
    subject_ref BIGINT NOT NULL,
    kind        BIGINT NOT NULL,
    code_id     BIGINT NOT NULL,
    detail_id   BIGINT,
    status      BIGINT NOT NULL,
    start_time  BIGINT NOT NULL,
    end_time    BIGINT,
    value       DOUBLE PRECISION,
    run_id      BIGINT NOT NULL
);
CREATE INDEX pending_events_subject ON pending_events (subject_ref);

ALTER TABLE ingest_runs ADD COLUMN pending BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ingest_runs ADD COLUMN resolved BIGINT NOT NULL DEFAULT 0;
