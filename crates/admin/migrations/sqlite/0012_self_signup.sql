-- Self sign-up: users outside any account ("unmanaged"), on a 30-day ProTrial until an account adds them.
-- SQLite cannot drop NOT NULL in place, so the table is rebuilt with account_id nullable.
CREATE TABLE users_rebuilt (
    id                  TEXT PRIMARY KEY,
    account_id          TEXT REFERENCES accounts (id),   -- NULL: an unmanaged (self-signed-up) user
    email               TEXT NOT NULL UNIQUE,
    display_name        TEXT NOT NULL,
    license             TEXT NOT NULL,
    user_type           TEXT NOT NULL,
    registration_status TEXT NOT NULL,
    personal_pin        TEXT NOT NULL UNIQUE,
    created_at          TEXT NOT NULL,
    seq                 INTEGER NOT NULL UNIQUE,
    sessions_revoked_at TEXT,
    password_hash       TEXT,
    registered_at       TEXT,
    trial_ends_at       TEXT                              -- end of a ProTrial (unmanaged users)
);
INSERT INTO users_rebuilt (id, account_id, email, display_name, license, user_type, registration_status,
    personal_pin, created_at, seq, sessions_revoked_at, password_hash, registered_at)
SELECT id, account_id, email, display_name, license, user_type, registration_status,
    personal_pin, created_at, seq, sessions_revoked_at, password_hash, registered_at FROM users;
DROP TABLE users;
ALTER TABLE users_rebuilt RENAME TO users;
CREATE INDEX users_account ON users (account_id, seq);

-- E-mail confirmation links of self sign-ups (only the token's SHA-256 is stored).
CREATE TABLE signups (
    token_sha256 TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
