-- People (`people.rs`): accounts signed in with an email address and a password, beside
-- the API tokens machines keep using. The password is kept only as its argon2id hash (a
-- PHC string). Signing out everywhere moves `sessions_valid_after`: sessions opened before
-- it name nobody.
CREATE TABLE people (
    id TEXT PRIMARY KEY,
    -- Trimmed and lowercased; one account per address.
    email TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    email_verified_at BIGINT,
    sessions_valid_after BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Links mailed to a person (verify the address, reset the password), kept as the sha256 of
-- their secret part; each works once, until it expires.
CREATE TABLE person_links (
    secret_sha256 TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,
    -- verify | reset
    purpose TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX person_links_of_person ON person_links (person_id, purpose);

-- What a person belongs to: an organization (a tenant, a publisher, or the operators)
-- and the role there.
CREATE TABLE memberships (
    person_id TEXT NOT NULL,
    -- tenant | publisher | operator
    org_kind TEXT NOT NULL,
    org_id TEXT NOT NULL,
    -- owner | admin | developer | finance | viewer
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (person_id, org_kind, org_id)
);
CREATE INDEX memberships_of_org ON memberships (org_kind, org_id);

-- Failed sign-ins, counted per subject (`email:<address>` and `address:<client ip>`) over
-- a window to refuse guessing; rows older than the window are removed as new ones come.
CREATE TABLE sign_in_failures (
    subject TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX sign_in_failures_by_subject ON sign_in_failures (subject, at);

-- Mail to send (`mail.rs`), written in the transaction of what causes it; sent by the
-- worker over SMTP or written to the data folder, retried on the delivery schedule.
CREATE TABLE mail_outbox (
    id TEXT PRIMARY KEY,
    -- verify | reset | ...
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    -- queued | running | retrying | sent | dead
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_by TEXT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX mail_outbox_due ON mail_outbox (state, next_attempt_at);

-- A console session opened by a person (rather than by pasting an API token).
ALTER TABLE console_sessions ADD COLUMN person_id TEXT;
