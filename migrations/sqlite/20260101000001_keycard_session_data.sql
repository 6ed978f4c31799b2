-- Session data: a JSON object text per session (NULL for none), and per refresh family. The
-- family's data lives on its row, so it goes whenever the family row is deleted.
ALTER TABLE keycard_sessions ADD COLUMN data TEXT;
ALTER TABLE keycard_refresh_families ADD COLUMN data TEXT;
