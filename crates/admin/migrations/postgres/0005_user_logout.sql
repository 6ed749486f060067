-- LogoutUser: sessions issued before this instant are revoked.
ALTER TABLE users ADD COLUMN sessions_revoked_at TEXT;
