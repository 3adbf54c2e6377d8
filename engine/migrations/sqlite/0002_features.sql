-- Feature store: versioned feature sets and point-in-time feature vectors.

CREATE TABLE feature_sets (
    hash       TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    definition TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- One row per (feature set version, as-of date, person): the numeric vector as a JSON
-- array in the set's feature order (null = missing), the protected attributes as a JSON
-- object (fairness measurement only), and the label where its horizon is observed.
CREATE TABLE feature_vectors (
    feature_set    TEXT    NOT NULL,
    as_of          INTEGER NOT NULL,
    person_id      INTEGER NOT NULL,
    vals           TEXT    NOT NULL,
    protected      TEXT    NOT NULL,
    label          REAL,
    label_complete INTEGER NOT NULL,
    PRIMARY KEY (feature_set, as_of, person_id)
);

CREATE TABLE feature_builds (
    feature_set TEXT    NOT NULL,
    as_of       INTEGER NOT NULL,
    persons     INTEGER NOT NULL,
    built_at    TEXT    NOT NULL,
    report      TEXT    NOT NULL,
    PRIMARY KEY (feature_set, as_of)
);
