-- A person's second factor (`people/second_factor.rs`): a TOTP secret sealed with the
-- master key (the person's id as associated data), pending while being set up; the last
-- time step a code was accepted for, so a code works once; recovery codes kept as sha256.
ALTER TABLE people ADD COLUMN totp_sealed TEXT;
ALTER TABLE people ADD COLUMN totp_pending_sealed TEXT;
ALTER TABLE people ADD COLUMN totp_last_step BIGINT;

CREATE TABLE recovery_codes (
    person_id TEXT NOT NULL,
    code_sha256 TEXT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (person_id, code_sha256)
);

-- A sign-in whose password was right, waiting for the second factor (5 minutes), named by
-- the sha256 of a cookie.
CREATE TABLE second_factor_challenges (
    id_sha256 TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
