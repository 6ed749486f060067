-- Web sign-in. A user sets a password when accepting their invitation (Argon2id, PHC string).
ALTER TABLE users ADD COLUMN password_hash TEXT;
ALTER TABLE users ADD COLUMN registered_at TEXT;
-- Sign-in sessions: the cookie holds a random token; only its SHA-256 is stored.
CREATE TABLE sessions (
    token_sha256 TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
