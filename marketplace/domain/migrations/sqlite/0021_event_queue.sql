-- Asynchronous events (`runner/queue.rs`): an event accepted with `Prefer: respond-async` is
-- kept here, and one delivery per install it was for, in the transaction that answers 202.
-- Workers claim due deliveries, run them and settle them; `seq` is the order the deliveries
-- were queued in, which an install asking for ordered delivery gets them in.
CREATE TABLE queued_events (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    accepted_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    install_id TEXT NOT NULL,
    plugin_id TEXT NOT NULL,
    ordered BIGINT NOT NULL,
    -- queued | running | retrying | applied | failed | dead | cancelled
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    -- When a queued or retrying delivery is due; for a running one, when its claim lapses.
    next_attempt_at BIGINT NOT NULL,
    claimed_by TEXT,
    invocation_id TEXT,
    last_outcome TEXT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (install_id, event_id)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state IN ('queued', 'running', 'retrying');
CREATE INDEX deliveries_of_event ON deliveries (tenant_id, event_id);
CREATE INDEX deliveries_by_state ON deliveries (tenant_id, state, seq);
CREATE INDEX deliveries_open_of_install ON deliveries (install_id, seq) WHERE state IN ('queued', 'running', 'retrying');

-- Whether the install's version asks for its events one at a time, in order (`ordered-delivery`
-- in its manifest); written with `event_types`.
ALTER TABLE installs ADD COLUMN ordered_delivery BIGINT NOT NULL DEFAULT 0;
