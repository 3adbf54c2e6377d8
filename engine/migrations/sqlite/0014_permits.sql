-- Secondary-use permits (Act 552/2019): every registration, amendment and revocation is
-- a new version; the newest version of an id is the permit as it stands. Nothing is
-- updated or deleted. `definition` is the permit's canonical JSON; `audit_seq` is the
-- entry that recorded the change, appended in the same transaction.
CREATE TABLE permits (
    id          TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    definition  TEXT   NOT NULL,
    change      TEXT   NOT NULL,
    reason      TEXT,
    recorded_at TEXT   NOT NULL,
    recorded_by TEXT   NOT NULL,
    audit_seq   BIGINT NOT NULL,
    PRIMARY KEY (id, version)
);
