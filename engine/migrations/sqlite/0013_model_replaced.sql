-- Which model an activation replaced, so that a rollback reactivates exactly that one
-- (and a second rollback walks one step further back).
ALTER TABLE models ADD COLUMN replaced TEXT;
