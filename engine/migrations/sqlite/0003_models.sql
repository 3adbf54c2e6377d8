-- Model registry: every trained model as a content-hashed artifact with its state
-- (trained → approved → active → retired) and the history of who changed it, when.

CREATE TABLE models (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    feature_set TEXT NOT NULL,
    state       TEXT NOT NULL,
    gate_passed INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    artifact    TEXT NOT NULL
);

CREATE TABLE model_history (
    model_id TEXT NOT NULL,
    state    TEXT NOT NULL,
    at       TEXT NOT NULL,
    by_whom  TEXT NOT NULL
);

-- GDPR Art 21 objections: these persons are never scored or used in training.
CREATE TABLE objections (
    person_id     INTEGER PRIMARY KEY,
    registered_at TEXT NOT NULL
);
