-- Self sign-up: users outside any account ("unmanaged"), on a 30-day ProTrial until an account adds them.
ALTER TABLE users ALTER COLUMN account_id DROP NOT NULL;
ALTER TABLE users ADD COLUMN trial_ends_at TEXT;

-- E-mail confirmation links of self sign-ups (only the token's SHA-256 is stored).
CREATE TABLE signups (
    token_sha256 TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
