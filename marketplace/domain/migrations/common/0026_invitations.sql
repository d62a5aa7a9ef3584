-- Invitations to an organization (`organizations.rs`): mailed to an address with a role,
-- kept as the sha256 of the link's secret, accepted once by the person with that address
-- within 7 days. A new invitation of the same address to the same organization replaces
-- the one pending.
CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL UNIQUE,
    org_kind TEXT NOT NULL,
    org_id TEXT NOT NULL,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    invited_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- accepted | revoked | replaced; NULL while pending
    outcome TEXT,
    ended_at BIGINT
);
CREATE INDEX invitations_of_org ON invitations (org_kind, org_id, created_at);
