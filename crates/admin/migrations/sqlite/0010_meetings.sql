-- Meetings created by hosts (instant and scheduled). Personal-PIN meetings need no row: the PIN is
-- looked up in users. Meeting IDs and personal PINs share one 10-digit namespace.
CREATE TABLE meetings (
    id               TEXT PRIMARY KEY,   -- 10 digits; also the media plane's meeting id
    host_user_id     TEXT NOT NULL,
    account_id       TEXT,               -- the host's account (None: an unmanaged host)
    kind             TEXT NOT NULL,      -- instant | scheduled
    title            TEXT NOT NULL,
    starts_at        TEXT,               -- scheduled meetings
    duration_minutes INTEGER,            -- scheduled meetings
    invitees         TEXT NOT NULL,      -- JSON array of e-mail addresses
    created_at       TEXT NOT NULL
);
CREATE INDEX meetings_host ON meetings (host_user_id, created_at);
