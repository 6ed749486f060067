-- Account settings of the guide: remote control of shared screens, dial-out. Booleans as 0/1.
ALTER TABLE accounts ADD COLUMN disable_remote_control INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN enable_dial_out INTEGER NOT NULL DEFAULT 0;
