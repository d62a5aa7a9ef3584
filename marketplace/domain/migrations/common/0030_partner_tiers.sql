-- Partner tiers (`partner_tiers.rs`): operators define tiers (Registered, Select, Premier,
-- ...) ranked by `rank`, each reached automatically by a trailing-12-month gross collected
-- in any one currency (`thresholds`: JSON {"EUR": minor units}; none: every partner), or
-- only by an operator's assignment (`automatic` 0). A tier may carry a revenue-share
-- policy (`share_tiers`: JSON tiers as policies take them), set for a partner from the day
-- it reaches the tier, and a badge.
CREATE TABLE partner_tiers (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    rank BIGINT NOT NULL UNIQUE,
    automatic BIGINT NOT NULL,
    thresholds TEXT NOT NULL,
    share_tiers TEXT,
    badge TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Each partner's tier: computed by the daily job, or set by an operator (`manual` 1), which
-- the job then leaves alone.
CREATE TABLE partner_tier_assignments (
    publisher TEXT PRIMARY KEY,
    tier_key TEXT NOT NULL,
    manual BIGINT NOT NULL,
    assigned_at BIGINT NOT NULL,
    assigned_by TEXT NOT NULL
);

-- Marketplace-wide jobs run once per slot across nodes: the node whose guarded update moves
-- `next_run_at` past now runs the slot.
CREATE TABLE platform_jobs (
    name TEXT PRIMARY KEY,
    next_run_at BIGINT NOT NULL
);
