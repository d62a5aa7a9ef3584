-- An install's update bumps its tenant's generation (migration 0013) only when it changes
-- what the event path caches of it (`installs/delivery.rs`, `TARGET_COLUMNS`, and the
-- digest its component is loaded by): a billing run moving `next_bill_at` or
-- `paid_through` for thousands of installs no longer writes as many tenant rows nor empties
-- every node's caches. A column added to the cached target must be added here too.
DROP TRIGGER installs_bump_tenant ON installs;

CREATE TRIGGER installs_bump_tenant_written AFTER INSERT OR DELETE ON installs
    FOR EACH ROW EXECUTE FUNCTION installs_bump_tenant();

CREATE TRIGGER installs_bump_tenant_changed AFTER UPDATE ON installs
    FOR EACH ROW WHEN (
    NEW.tenant_id IS DISTINCT FROM OLD.tenant_id
    OR NEW.plugin_id IS DISTINCT FROM OLD.plugin_id
    OR NEW.version IS DISTINCT FROM OLD.version
    OR NEW.digest IS DISTINCT FROM OLD.digest
    OR NEW.event_types IS DISTINCT FROM OLD.event_types
    OR NEW.grants IS DISTINCT FROM OLD.grants
    OR NEW.config IS DISTINCT FROM OLD.config
    OR NEW.secrets_sealed IS DISTINCT FROM OLD.secrets_sealed
    OR NEW.status IS DISTINCT FROM OLD.status
    OR NEW.status_reason IS DISTINCT FROM OLD.status_reason
    OR NEW.consecutive_failures IS DISTINCT FROM OLD.consecutive_failures
    OR NEW.ordered_delivery IS DISTINCT FROM OLD.ordered_delivery
    ) EXECUTE FUNCTION installs_bump_tenant();

-- The ledger's balance is checked once per statement that writes entries, not once per
-- entry at commit (migration 0006): every transaction the statement touched must sum to zero
-- per currency over all its entries. `ledger::post_many` writes all the legs of a transaction
-- in one statement, so a transaction balances at the end of every statement; a transaction
-- whose legs were written in two statements is refused at the first, which is stricter than
-- the check at commit it replaces. Measured on the billing run (BENCHMARKS.md): the per-entry
-- trigger was about a third of PostgreSQL's time.
DROP TRIGGER ledger_entries_balance ON ledger_entries;
DROP FUNCTION ledger_transaction_balances();

CREATE FUNCTION ledger_statement_balances() RETURNS trigger AS $$
DECLARE
    unbalanced TEXT;
BEGIN
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

CREATE TRIGGER ledger_entries_balance AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_statement_balances();
