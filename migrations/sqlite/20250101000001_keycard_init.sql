-- keycard schema for SQLite. All times are BIGINT unix milliseconds; IDs are 32-byte SHA-256
-- hashes of the client's token (the token itself is never stored).

CREATE TABLE keycard_sessions (
    id                  BLOB    NOT NULL PRIMARY KEY,
    subject             TEXT    NOT NULL,
    roles               TEXT    NOT NULL,
    attributes          TEXT    NOT NULL,
    created_at          BIGINT  NOT NULL,
    last_seen_at        BIGINT  NOT NULL,
    authenticated_at    BIGINT  NOT NULL,
    expires_at          BIGINT  NOT NULL,
    absolute_expires_at BIGINT  NOT NULL,
    user_agent          TEXT,
    ip                  TEXT
);
CREATE INDEX keycard_sessions_subject ON keycard_sessions (subject, created_at);
CREATE INDEX keycard_sessions_expires_at ON keycard_sessions (expires_at);

-- One lock row per subject that has created a session under a limit; serializes such creations.
-- expires_at: the latest absolute expiry of a session created under the lock (for pruning).
CREATE TABLE keycard_subjects (
    subject    TEXT   NOT NULL PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX keycard_subjects_expires_at ON keycard_subjects (expires_at);

-- Refresh families: the current head, its immediate predecessor and the head's expiry.
CREATE TABLE keycard_refresh_families (
    family          TEXT   NOT NULL PRIMARY KEY,
    subject         TEXT   NOT NULL,
    head            BLOB   NOT NULL,
    prev            BLOB,
    head_expires_at BIGINT NOT NULL
);
CREATE INDEX keycard_refresh_families_subject ON keycard_refresh_families (subject);
CREATE INDEX keycard_refresh_families_head_expires_at ON keycard_refresh_families (head_expires_at);

CREATE TABLE keycard_refresh_tokens (
    id                BLOB   NOT NULL PRIMARY KEY,
    family            TEXT   NOT NULL,
    subject           TEXT   NOT NULL,
    roles             TEXT   NOT NULL,
    attributes        TEXT   NOT NULL,
    issued_at         BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    family_created_at BIGINT NOT NULL,
    family_expires_at BIGINT NOT NULL,
    authenticated_at  BIGINT NOT NULL,
    used_at           BIGINT,
    user_agent        TEXT,
    ip                TEXT
);
CREATE INDEX keycard_refresh_tokens_family ON keycard_refresh_tokens (family);
CREATE INDEX keycard_refresh_tokens_subject ON keycard_refresh_tokens (subject);

-- Access-token revocation: the jti denylist and per-subject epochs.
CREATE TABLE keycard_denylist (
    jti        TEXT   NOT NULL PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX keycard_denylist_expires_at ON keycard_denylist (expires_at);

CREATE TABLE keycard_epochs (
    subject TEXT   NOT NULL PRIMARY KEY,
    epoch   BIGINT NOT NULL
);
