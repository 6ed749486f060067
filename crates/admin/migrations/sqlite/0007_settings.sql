-- Settings documents: user settings (owner = user id), retention (owner = account id), global (owner = '').
-- Values are validated JSON in the API model's shape.
CREATE TABLE settings (
    scope  TEXT NOT NULL,
    owner  TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (scope, owner)
);
