-- The process that claimed a charge's attempt (`billing/collect.rs`): a claim whose process
-- is gone is resolved at once rather than when it expires (on SQLite, one server writes a
-- file, so any claim of another process is one whose process is gone).
ALTER TABLE charges ADD COLUMN claimed_by TEXT;
