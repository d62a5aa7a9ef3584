-- A ledger entry's transaction is checked once per statement, not once per entry.
-- PostgreSQL checks a foreign key with one query per inserted row, run at the end of the
-- statement; a collected charge writes seven ledger entries, and in a billing run those
-- checks were about a fifth of PostgreSQL's time (BENCHMARKS.md). The statement-level trigger
-- that checks balances (migration 0038) now also refuses entries whose transaction does not
-- exist, with one anti-join over the statement's rows. The key's other half, a transaction
-- removed under its entries, cannot happen: ledger rows are never updated or deleted
-- (migration 0006), and from here a TRUNCATE of either ledger table is refused as well.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_transaction_id_fkey;

CREATE OR REPLACE FUNCTION ledger_statement_balances() RETURNS trigger AS $$
DECLARE
    missing TEXT;
    unbalanced TEXT;
BEGIN
    SELECT w.transaction_id INTO missing
    FROM written w
    WHERE NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.id = w.transaction_id)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'ledger entries name transaction % that does not exist', missing USING ERRCODE = '23503';
    END IF;
    SELECT e.transaction_id INTO unbalanced
    FROM ledger_entries e
    WHERE e.transaction_id IN (SELECT transaction_id FROM written)
    GROUP BY e.transaction_id, e.currency
    HAVING SUM(e.amount_minor) <> 0
    LIMIT 1;
    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % does not balance', unbalanced USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_entries_not_truncated BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_immutable();
CREATE TRIGGER ledger_transactions_not_truncated BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_immutable();
