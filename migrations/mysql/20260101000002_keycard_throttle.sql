-- Login throttling: one attempt counter per key. `id` is a 32-byte hash of the identifier or
-- client address counted (never the value itself); times are unix milliseconds. `attempts`
-- (in flight or failed) and `failures` count within the window ending at `window_end`;
-- `lockout_ms` is the length of the last lockout (the next one grows from it). `step` is what
-- the last attempt did: MySQL evaluates the assignments of `ON DUPLICATE KEY UPDATE` left to
-- right, so the upsert computes the step once, first, and the other assignments read it.
CREATE TABLE keycard_throttle (
    id         BINARY(32) NOT NULL PRIMARY KEY,
    attempts   BIGINT     NOT NULL,
    failures   BIGINT     NOT NULL,
    window_end BIGINT     NOT NULL,
    expires_at BIGINT     NOT NULL,
    lockout_ms BIGINT     NOT NULL,
    step       TINYINT    NOT NULL,
    INDEX keycard_throttle_expires_at (expires_at)
) ENGINE = InnoDB;
