-- Scoring: suggestions for caseworkers, and the record of every scoring run with its
-- oversight counts (how many persons each rule excluded or suppressed; never who).

CREATE TABLE suggestions (
    id                  TEXT PRIMARY KEY,
    as_of               BIGINT NOT NULL,
    person_id           BIGINT NOT NULL,
    unit                TEXT NOT NULL,
    score               DOUBLE PRECISION NOT NULL,
    band                TEXT NOT NULL,
    factors             TEXT NOT NULL,
    interventions       TEXT NOT NULL,
    rule_trace          TEXT NOT NULL,
    model_id            TEXT NOT NULL,
    rules_version       TEXT NOT NULL,
    feature_set_version TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    expires_at          TEXT NOT NULL,
    status              TEXT NOT NULL
);

CREATE INDEX suggestions_as_of ON suggestions (as_of, status);
CREATE INDEX suggestions_unit ON suggestions (unit, as_of);

CREATE TABLE scoring_runs (
    id                  BIGSERIAL PRIMARY KEY,
    as_of               BIGINT NOT NULL,
    model_id            TEXT NOT NULL,
    rules_version       TEXT NOT NULL,
    feature_set_version TEXT NOT NULL,
    at                  TEXT NOT NULL,
    by_whom             TEXT NOT NULL,
    report              TEXT NOT NULL
);
