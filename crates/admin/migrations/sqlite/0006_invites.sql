-- Invitations: an e-mailed registration link per invited user. Only the token's SHA-256 is stored.
CREATE TABLE invites (
    id            TEXT PRIMARY KEY,     -- UUID (the API's InviteId)
    account_id    TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    email         TEXT NOT NULL,
    token_sha256  TEXT NOT NULL UNIQUE,
    status        TEXT NOT NULL,        -- Pending | Accepted | Failed
    email_status  TEXT NOT NULL,        -- NotSent | Sent | Failed
    created_at    TEXT NOT NULL
);
CREATE INDEX invites_user ON invites (user_id);
