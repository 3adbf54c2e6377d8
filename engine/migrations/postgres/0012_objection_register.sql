-- GDPR Art 21 objections as a register the data-protection officer keeps: by pseudonym
-- (a person who objects before their records arrive is covered when they do), with the
-- officer's reference, who registered it and when, and a withdrawal that keeps the
-- record. An active objection (not withdrawn) keeps the person out of scoring and
-- training. Objections registered before this migration keep their date.
CREATE TABLE objection_register (
    pseudonym           TEXT PRIMARY KEY,
    reference           TEXT NOT NULL,
    registered_at       TEXT NOT NULL,
    registered_by       TEXT NOT NULL,
    withdrawn_at        TEXT,
    withdrawn_by        TEXT,
    withdrawn_reference TEXT,
    audit_seq           BIGINT NOT NULL
);
INSERT INTO objection_register (pseudonym, reference, registered_at, registered_by, audit_seq)
SELECT p.pseudonym, '', o.registered_at, '', 0
  FROM objections o JOIN persons p ON p.id = o.person_id;
DROP TABLE objections;
ALTER TABLE objection_register RENAME TO objections;
