-- A person's pseudonym beside each of their suggestions (a pseudonym never changes once
-- its person is stored), so a unit's queue is read from one index alone: no visit to
-- the suggestion's row or to `persons` per listed suggestion. It matters because every
-- commit (each audited call is one) makes SQLite's other connections drop their page
-- caches, and a listing that visited the table and `persons` for every row re-read
-- those pages after each (the query plan now says USING COVERING INDEX).
ALTER TABLE suggestions ADD COLUMN pseudonym TEXT;
UPDATE suggestions
   SET pseudonym = (SELECT p.pseudonym FROM persons p WHERE p.id = suggestions.person_id);

DROP INDEX suggestions_unit_queue;
CREATE INDEX suggestions_unit_queue
    ON suggestions (unit, status, band DESC, score DESC, created_at, id, expires_at, pseudonym);
