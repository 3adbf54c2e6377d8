-- A person's pseudonym beside each of their suggestions (a pseudonym never changes once
-- its person is stored), so a unit's queue is read from one index alone (an index-only
-- scan): no visit to the suggestion's row or to `persons` per listed suggestion.
ALTER TABLE suggestions ADD COLUMN pseudonym TEXT;
UPDATE suggestions s
   SET pseudonym = p.pseudonym
  FROM persons p
 WHERE p.id = s.person_id;

DROP INDEX suggestions_unit_queue;
CREATE INDEX suggestions_unit_queue
    ON suggestions (unit, status, band DESC, score DESC, created_at, id)
    INCLUDE (expires_at, pseudonym);
