-- What happened in meetings, as consumed from the media plane's event log (billing and reports).

-- Every consumed event, by its id: the consumer's idempotency record, and the roster history reports show.
CREATE TABLE meeting_events (
    id            TEXT PRIMARY KEY,
    meeting_id    TEXT NOT NULL,
    conference_id TEXT,                -- the conference (occurrence of the meeting) it belongs to
    at            TEXT NOT NULL,
    kind          TEXT NOT NULL,
    body          TEXT NOT NULL,       -- the event as JSON
    log_offset    INTEGER NOT NULL      -- where in the event log it ended: the order events happened in
);
CREATE INDEX meeting_events_conference ON meeting_events (conference_id, log_offset);

-- One occurrence of a meeting, from its first attendee to its last. Its id is its MeetingStarted event id.
CREATE TABLE conferences (
    id           TEXT PRIMARY KEY,
    meeting_id   TEXT NOT NULL,
    account_id   TEXT,                 -- the host's account (none for meetings unknown to the admin plane)
    host_user_id TEXT,
    kind         TEXT NOT NULL,        -- instant | scheduled | personal | unknown
    started_at   TEXT NOT NULL,
    ended_at     TEXT,
    recorded     INTEGER NOT NULL,     -- 0/1: a recording was started
    dialed_in    INTEGER NOT NULL,     -- 0/1: a telephone attendee
    room_system  INTEGER NOT NULL      -- 0/1: a SIP or H.323 attendee
);
CREATE INDEX conferences_meeting ON conferences (meeting_id, ended_at);
CREATE INDEX conferences_account ON conferences (account_id, ended_at);

CREATE TABLE conference_attendees (
    conference_id TEXT NOT NULL,
    attendee_id   TEXT NOT NULL,
    user_id       TEXT,
    name          TEXT NOT NULL,
    client        TEXT NOT NULL,
    role          TEXT NOT NULL,
    joined_at     TEXT NOT NULL,
    left_at       TEXT,
    leave_reason  TEXT,
    PRIMARY KEY (conference_id, attendee_id)
);
CREATE INDEX conference_attendees_user ON conference_attendees (user_id);

-- Active Pro: a user billed for a UTC day (the day the qualifying meeting ended), once.
CREATE TABLE active_pro_days (
    user_id       TEXT NOT NULL,
    day           TEXT NOT NULL,       -- YYYY-MM-DD
    account_id    TEXT NOT NULL,
    conference_id TEXT NOT NULL,
    reason        TEXT NOT NULL,       -- criteria met, '+'-separated, e.g. scheduled+more_than_two_attendees
    PRIMARY KEY (user_id, day)
);
CREATE INDEX active_pro_days_account ON active_pro_days (account_id, day);

-- End-of-meeting survey answers: one per attendee per conference.
CREATE TABLE feedback (
    conference_id TEXT NOT NULL,
    attendee_id   TEXT NOT NULL,
    user_id       TEXT,
    positive      INTEGER NOT NULL,    -- 1 thumbs up, 0 thumbs down
    at            TEXT NOT NULL,
    PRIMARY KEY (conference_id, attendee_id)
);

-- How far each durable consumer has read the event log (byte offset), moved in the same transaction
-- as the effects of what it read.
CREATE TABLE consumer_offsets (
    consumer TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
