-- keycard schema for MySQL 8 / MariaDB 10.5+. All times are BIGINT unix milliseconds; IDs are
-- 32-byte SHA-256 hashes of the client's token (the token itself is never stored).
-- Keys (subject, family, jti) are VARBINARY holding UTF-8 so that they compare byte-wise, with
-- no case folding and no trailing-space padding, exactly like the in-memory store.

CREATE TABLE keycard_sessions (
    id                  BINARY(32)      NOT NULL PRIMARY KEY,
    subject             VARBINARY(512)  NOT NULL,
    roles               MEDIUMTEXT      NOT NULL,
    attributes          MEDIUMTEXT      NOT NULL,
    created_at          BIGINT          NOT NULL,
    last_seen_at        BIGINT          NOT NULL,
    authenticated_at    BIGINT          NOT NULL,
    expires_at          BIGINT          NOT NULL,
    absolute_expires_at BIGINT          NOT NULL,
    user_agent          TEXT,
    ip                  TEXT,
    INDEX keycard_sessions_subject (subject, created_at),
    INDEX keycard_sessions_expires_at (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One lock row per subject that has created a session under a limit; serializes such creations.
-- expires_at: the latest absolute expiry of a session created under the lock (for pruning).
CREATE TABLE keycard_subjects (
    subject    VARBINARY(512) NOT NULL PRIMARY KEY,
    expires_at BIGINT         NOT NULL,
    INDEX keycard_subjects_expires_at (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Refresh families: the current head, its immediate predecessor and the head's expiry.
CREATE TABLE keycard_refresh_families (
    family          VARBINARY(255) NOT NULL PRIMARY KEY,
    subject         VARBINARY(512) NOT NULL,
    head            BINARY(32)     NOT NULL,
    prev            BINARY(32),
    head_expires_at BIGINT         NOT NULL,
    INDEX keycard_refresh_families_subject (subject),
    INDEX keycard_refresh_families_head_expires_at (head_expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE keycard_refresh_tokens (
    id                BINARY(32)     NOT NULL PRIMARY KEY,
    family            VARBINARY(255) NOT NULL,
    subject           VARBINARY(512) NOT NULL,
    roles             MEDIUMTEXT     NOT NULL,
    attributes        MEDIUMTEXT     NOT NULL,
    issued_at         BIGINT         NOT NULL,
    expires_at        BIGINT         NOT NULL,
    family_created_at BIGINT         NOT NULL,
    family_expires_at BIGINT         NOT NULL,
    authenticated_at  BIGINT         NOT NULL,
    used_at           BIGINT,
    user_agent        TEXT,
    ip                TEXT,
    INDEX keycard_refresh_tokens_family (family),
    INDEX keycard_refresh_tokens_subject (subject)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Access-token revocation: the jti denylist and per-subject epochs.
CREATE TABLE keycard_denylist (
    jti        VARBINARY(255) NOT NULL PRIMARY KEY,
    expires_at BIGINT         NOT NULL,
    INDEX keycard_denylist_expires_at (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE keycard_epochs (
    subject VARBINARY(512) NOT NULL PRIMARY KEY,
    epoch   BIGINT         NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
