-- Accounts (the guide's team and enterprise accounts).
CREATE TABLE accounts (
    id              TEXT PRIMARY KEY,          -- UUID
    name            TEXT NOT NULL,
    account_type    TEXT NOT NULL,             -- Team | EnterpriseDirectory | EnterpriseLWA | EnterpriseOIDC
    default_license TEXT NOT NULL,             -- Basic | Plus | Pro | ProTrial
    status          TEXT NOT NULL,             -- Active | Suspended
    created_at      TEXT NOT NULL,             -- RFC 3339 UTC, millisecond precision: sorts as text
    seq             BIGINT NOT NULL UNIQUE     -- creation order, for stable pagination
);
CREATE INDEX accounts_name ON accounts (name);
