-- The audit trail: one CloudTrail-format record per API call, allowed or denied, success or error.
-- Records are chained: hash = SHA-256(prev_hash || record), so altering, removing or reordering one
-- breaks every later hash.
CREATE TABLE audit_records (
    seq         INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,
    event_time  TEXT NOT NULL,
    event_name  TEXT NOT NULL,
    principal   TEXT NOT NULL,          -- '' when the caller was not authenticated
    record      TEXT NOT NULL,          -- the CloudTrail JSON record
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_time ON audit_records (event_time);
CREATE INDEX audit_name ON audit_records (event_name, event_time);
