-- Per-session lifetime chosen at login: an idle timeout shorter than the configured one (NULL
-- for the configured one) and whether the cookie is persistent or a browser-session cookie.
-- Refresh tokens copy both from their family's first token, as they copy its expiry.
ALTER TABLE keycard_sessions ADD COLUMN idle_timeout_ms INTEGER;
ALTER TABLE keycard_sessions ADD COLUMN persistent BOOLEAN NOT NULL DEFAULT 1;
ALTER TABLE keycard_refresh_tokens ADD COLUMN idle_timeout_ms INTEGER;
ALTER TABLE keycard_refresh_tokens ADD COLUMN persistent BOOLEAN NOT NULL DEFAULT 1;
