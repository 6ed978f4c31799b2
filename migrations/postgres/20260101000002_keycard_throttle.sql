-- Login throttling: one attempt counter per key. `id` is a 32-byte hash of the identifier or
-- client address counted (never the value itself); times are unix milliseconds. `attempts`
-- (in flight or failed) and `failures` count within the window ending at `window_end`;
-- `lockout_ms` is the length of the last lockout (the next one grows from it); `step` is what
-- the last attempt did (the upsert returns it).
CREATE TABLE keycard_throttle (
    id         BYTEA    NOT NULL PRIMARY KEY CHECK (octet_length(id) = 32),
    attempts   BIGINT   NOT NULL,
    failures   BIGINT   NOT NULL,
    window_end BIGINT   NOT NULL,
    expires_at BIGINT   NOT NULL,
    lockout_ms BIGINT   NOT NULL,
    step       BIGINT   NOT NULL
);
CREATE INDEX keycard_throttle_expires_at ON keycard_throttle (expires_at);
