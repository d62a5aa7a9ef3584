-- Who made each token: the audit name of the caller that created it. A token a person
-- signed in for (`nexus login`) also names that person, and ends with their membership.
ALTER TABLE publisher_tokens ADD COLUMN created_by TEXT;
ALTER TABLE publisher_tokens ADD COLUMN person_id TEXT;
CREATE INDEX publisher_tokens_of_person ON publisher_tokens (person_id);
