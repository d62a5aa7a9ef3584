-- The partner program (`partner_program.rs`): a signed-in person applies to become a
-- partner under a namespace; an operator approves (the publisher is created with the
-- applicant as its owner) or rejects with a reason. One pending application per namespace.
CREATE TABLE partner_applications (
    id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,
    company TEXT NOT NULL,
    namespace TEXT NOT NULL,
    website TEXT NOT NULL,
    support_email TEXT NOT NULL,
    -- The partner agreement's version the applicant accepted.
    agreement_version TEXT NOT NULL,
    -- pending | approved | rejected
    state TEXT NOT NULL,
    reason TEXT,
    decided_by TEXT,
    decided_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX partner_applications_one_pending ON partner_applications (namespace) WHERE state = 'pending';
CREATE INDEX partner_applications_by_state ON partner_applications (state, created_at);
CREATE INDEX partner_applications_of_person ON partner_applications (person_id, created_at);

-- The organization a person's console session acts as (their first one when unset).
ALTER TABLE console_sessions ADD COLUMN org_kind TEXT;
ALTER TABLE console_sessions ADD COLUMN org_id TEXT;
