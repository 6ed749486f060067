-- Principals: the deployment's administrators (API callers), with their access keys.
CREATE TABLE principals (
    name              TEXT PRIMARY KEY,
    access_key_id     TEXT NOT NULL UNIQUE,
    secret_sealed     TEXT NOT NULL,      -- secret access key, sealed with the master key (hex)
    policies          TEXT NOT NULL,      -- JSON array: managed policy names or policy documents
    created_at        TEXT NOT NULL
);
