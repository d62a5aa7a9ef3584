-- Plans: what a listing's installs pay. A plan is a key (`team`) with revisions: a price
-- change is a new revision, and an install keeps paying the revision it agreed to until its
-- tenant moves it. Amounts are integer minor units of `currency`.
CREATE TABLE plans (
    id TEXT PRIMARY KEY,
    plugin_id TEXT NOT NULL REFERENCES plugins (id),
    plan_key TEXT NOT NULL,
    revision BIGINT NOT NULL,
    name TEXT NOT NULL,
    -- free | one-time | subscription | usage
    model TEXT NOT NULL,
    currency TEXT,
    -- the one-time price, or the base fee of each subscription period
    price_minor BIGINT NOT NULL,
    -- month | year (subscription and usage periods)
    billing_interval TEXT,
    trial_days BIGINT NOT NULL,
    meter TEXT,
    unit_minor BIGINT,
    included_units BIGINT,
    cap_minor BIGINT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT,
    UNIQUE (plugin_id, plan_key, revision)
);

-- Where each install stands in its billing: the plan revision it pays, the anchor its
-- periods are counted from, its trial, and how far it has been charged (subscriptions in
-- advance up to `paid_through`, usage in arrears up to `usage_billed_until`).
ALTER TABLE installs ADD COLUMN plan_id TEXT REFERENCES plans (id);
ALTER TABLE installs ADD COLUMN billing_anchor BIGINT;
ALTER TABLE installs ADD COLUMN trial_ends_at BIGINT;
ALTER TABLE installs ADD COLUMN paid_through BIGINT;
ALTER TABLE installs ADD COLUMN usage_billed_until BIGINT;
-- When the install next has something to bill (a period to charge in advance or a usage
-- period that ended); NULL when nothing will be due.
ALTER TABLE installs ADD COLUMN next_bill_at BIGINT;
CREATE INDEX installs_next_bill ON installs (next_bill_at);

-- A tenant's trial of a plugin is used once: reinstalling finds it here.
CREATE TABLE trials (
    tenant_id TEXT NOT NULL,
    plugin_id TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, plugin_id)
);

-- Charges: one line of what a tenant owes, unique by what it bills (install, line, period
-- start), so a billing run that runs again, on any node, charges nothing twice. `detail`
-- explains the amount (plan, revision, units, included, unit price, cap). The split is
-- fixed once, when the charge is collected.
CREATE TABLE charges (
    id TEXT PRIMARY KEY,
    install_id TEXT NOT NULL REFERENCES installs (id),
    tenant_id TEXT NOT NULL,
    plugin_id TEXT NOT NULL,
    publisher TEXT NOT NULL,
    plan_id TEXT NOT NULL REFERENCES plans (id),
    -- one-time | subscription | proration | usage:<meter>
    line TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    period_end BIGINT NOT NULL,
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
    detail TEXT NOT NULL,
    -- nothing-due | pending | collecting | collected | failed
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT,
    claimed_until BIGINT,
    fee_minor BIGINT,
    refunded_minor BIGINT NOT NULL,
    fee_refunded_minor BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    collected_at BIGINT,
    UNIQUE (install_id, line, period_start)
);
CREATE INDEX charges_due ON charges (status, next_attempt_at);
CREATE INDEX charges_tenant ON charges (tenant_id, period_start);
CREATE INDEX charges_publisher ON charges (publisher, period_start);

-- Every attempt to collect a charge, under its own idempotency key at the provider. An
-- attempt whose outcome is unknown (timed out, or the node died during the call) is
-- resolved by asking the provider about that key, never by collecting again.
CREATE TABLE payment_attempts (
    charge_id TEXT NOT NULL REFERENCES charges (id),
    attempt BIGINT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    -- started | succeeded | declined | unknown | abandoned
    status TEXT NOT NULL,
    provider_reference TEXT,
    message TEXT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (charge_id, attempt)
);

-- Refunds of collected charges (and the credit of a downgrade's unused period), with the
-- fee each returned.
CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    charge_id TEXT NOT NULL REFERENCES charges (id),
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    fee_minor BIGINT NOT NULL,
    -- refund | proration-credit
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX refunds_charge ON refunds (charge_id);

-- Revenue-share policies: the default (no publisher), a publisher's, or one plan's (by
-- plugin and plan key), each from `effective_from` on. The newest one in force of the most
-- specific scope applies. Tier bounds are whole units of the charge's currency.
CREATE TABLE share_policies (
    id TEXT PRIMARY KEY,
    publisher TEXT,
    plugin_id TEXT,
    plan_key TEXT,
    tiers TEXT NOT NULL,
    effective_from BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX share_policies_scope ON share_policies (publisher, plugin_id, plan_key, effective_from);

-- A partner's lifetime gross collected per currency: its position in the tiers. The row is
-- locked by each collection, which serializes a partner's fees in one currency.
CREATE TABLE partner_totals (
    publisher TEXT NOT NULL,
    currency TEXT NOT NULL,
    lifetime_gross_minor BIGINT NOT NULL,
    PRIMARY KEY (publisher, currency)
);

-- Plan changes, each under the tenant's idempotency key (with the hash of its request): a
-- retried change finds its row instead of charging or crediting again.
CREATE TABLE plan_changes (
    idempotency_key TEXT PRIMARY KEY,
    request_sha256 TEXT NOT NULL,
    install_id TEXT NOT NULL REFERENCES installs (id),
    from_plan TEXT NOT NULL,
    to_plan TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);
