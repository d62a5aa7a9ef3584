-- Tenants' webhook endpoints and what is posted to them (`webhooks.rs`). An endpoint's
-- signing secret is sealed with the master key (the endpoint id as associated data); after a
-- rotation the previous one keeps signing beside it until `previous_until`.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    previous_secret_sealed TEXT,
    previous_until BIGINT,
    enabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_of_tenant ON webhook_endpoints (tenant_id, created_at);

-- The kinds of message each endpoint receives.
CREATE TABLE webhook_subscriptions (
    endpoint_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, kind)
);
CREATE INDEX webhook_subscriptions_by_kind ON webhook_subscriptions (tenant_id, kind);

-- One message to one endpoint. `message_id` is the `webhook-id` header: the same on every
-- attempt, and made from what caused the message, so writing it twice keeps one row.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    -- queued | running | retrying | delivered | dead
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_by TEXT,
    last_status BIGINT,
    last_error TEXT,
    last_latency_ms BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (message_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state IN ('queued', 'running', 'retrying');
CREATE INDEX webhook_deliveries_of_endpoint ON webhook_deliveries (endpoint_id, created_at, id);
