-- Who made each token: the audit name of the caller that created it (a person's session,
-- or another token). A token a person signed in for (`nexus login`) also names that person
-- and ends when they leave the organization, change role, or sign out everywhere. (The
-- registry's migration 0002 gives `publisher_tokens` the same columns.)
ALTER TABLE account_tokens ADD COLUMN created_by TEXT;
ALTER TABLE account_tokens ADD COLUMN person_id TEXT;
CREATE INDEX account_tokens_of_person ON account_tokens (person_id);

-- The partner agreement versions each publisher accepted, and who accepted them. A publisher
-- that joined through the partner program publishes only once it accepted the current one;
-- publishers an operator created by hand have no row (their agreement lives outside).
CREATE TABLE partner_agreements (
    publisher TEXT NOT NULL,
    version TEXT NOT NULL,
    accepted_by TEXT NOT NULL,
    accepted_at BIGINT NOT NULL,
    PRIMARY KEY (publisher, version)
);

-- Marketplace-wide settings operators change in the console, one row per setting
-- (`require_second_factor`: every person must set up a second factor).
CREATE TABLE marketplace_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
