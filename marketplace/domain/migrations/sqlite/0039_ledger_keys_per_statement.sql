-- PostgreSQL's migration 0039 moves the check of a ledger entry's transaction into its
-- per-statement trigger. SQLite checks foreign keys by an index lookup in the same pass as
-- the insert, cheaply, and has no TRUNCATE: nothing changes here. The migration exists so
-- the two backends keep the same numbering.
SELECT 1;
