-- Login throttling: one attempt counter per key. `id` is a 32-byte hash of the identifier or
-- client address counted (never the value itself); times are unix milliseconds. `attempts`
-- (in flight or failed) and `failures` count within the window ending at `window_end`;
-- `lockout_ms` is the length of the last lockout (the next one grows from it); `step` is what
-- the last attempt did (the upsert reads it back).
CREATE TABLE keycard_throttle (
    id         BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 32),
    attempts   INTEGER NOT NULL,
    failures   INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    lockout_ms INTEGER NOT NULL,
    step       INTEGER NOT NULL
);
CREATE INDEX keycard_throttle_expires_at ON keycard_throttle (expires_at);
