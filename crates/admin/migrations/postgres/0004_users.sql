-- Users of accounts. An e-mail address belongs to at most one user in the deployment.
CREATE TABLE users (
    id                  TEXT PRIMARY KEY,           -- UUID
    account_id          TEXT NOT NULL REFERENCES accounts (id),
    email               TEXT NOT NULL UNIQUE,       -- stored lower-case
    display_name        TEXT NOT NULL,
    license             TEXT NOT NULL,              -- Basic | Plus | Pro | ProTrial
    user_type           TEXT NOT NULL,              -- PrivateUser | SharedDevice
    registration_status TEXT NOT NULL,              -- Unregistered | Registered | Suspended
    personal_pin        TEXT NOT NULL UNIQUE,       -- 10 digits, unique in the deployment
    created_at          TEXT NOT NULL,
    seq                 BIGINT NOT NULL UNIQUE
);
CREATE INDEX users_account ON users (account_id, seq);
