-- An event applies to an install at most once: a later delivery of the same event id finds
-- the applied row instead of running again. Rows written before this rule that applied an
-- event a second time are kept (they are history) but marked, so billing counts one.
UPDATE invocations SET outcome = 'duplicate'
WHERE outcome = 'ok'
  AND id NOT IN (SELECT MIN(id) FROM invocations WHERE outcome = 'ok' GROUP BY install_id, event_id);
CREATE UNIQUE INDEX invocations_applied_once ON invocations (install_id, event_id) WHERE outcome = 'ok';
CREATE INDEX invocations_event ON invocations (tenant_id, event_id);

-- Billable units of each applied invocation, written in the same transaction as its row.
-- Only applied invocations (outcome 'ok') have usage rows: an attempt that failed or was
-- discarded (a KV conflict that was retried) committed nothing and is not billed.
CREATE TABLE invocation_usage (
    invocation_id TEXT NOT NULL REFERENCES invocations (id),
    meter TEXT NOT NULL,
    units BIGINT NOT NULL,
    PRIMARY KEY (invocation_id, meter)
);
