-- The nodes serving this marketplace. Each writes its row every few seconds; the ones heard
-- from recently are live: they share the per-tenant and publish limits, and operators list
-- them (GET /v1/nodes).
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    listen TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
