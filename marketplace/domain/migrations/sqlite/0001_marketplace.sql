-- Tenants: the companies that install plugins. Operators have no row: only tokens.
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Operator and tenant API tokens (publishers' live in publisher_tokens). Only the sha256
-- of a secret is stored.
CREATE TABLE account_tokens (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    tenant_id TEXT REFERENCES tenants (id),
    secret_sha256 TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);

-- Security- and money-relevant actions, append-only.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

-- One catalog listing per plugin, rebuilt from its newest installable version whenever a
-- version is published or yanked. Sets are stored as ',a,b,' so filters are LIKE '%,a,%'.
CREATE TABLE listings (
    plugin_id TEXT PRIMARY KEY REFERENCES plugins (id),
    publisher TEXT NOT NULL,
    name TEXT NOT NULL,
    summary TEXT NOT NULL,
    description TEXT NOT NULL,
    categories TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    pricing_models TEXT NOT NULL,
    latest_version TEXT NOT NULL,
    search_text TEXT NOT NULL,
    install_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    featured_at BIGINT,
    featured_note TEXT,
    delisted_at BIGINT,
    delist_reason TEXT
);
CREATE INDEX listings_popular ON listings (install_count, plugin_id);
CREATE INDEX listings_newest ON listings (created_at, plugin_id);

-- A tenant's install of a plugin. `version` runs; `pending_version` waits for consent to
-- the capabilities it adds. Uninstalled rows stay, with their invocations.
CREATE TABLE installs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    plugin_id TEXT NOT NULL REFERENCES plugins (id),
    requirement TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    event_types TEXT NOT NULL,
    grants TEXT NOT NULL,
    plan TEXT NOT NULL,
    config TEXT NOT NULL,
    secrets_sealed TEXT,
    secret_names TEXT NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    pending_version TEXT,
    pending_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    uninstalled_at BIGINT
);
CREATE UNIQUE INDEX installs_one_live_per_plugin ON installs (tenant_id, plugin_id) WHERE status <> 'uninstalled';
CREATE INDEX installs_plugin ON installs (plugin_id, status);

-- Every invocation, whatever its outcome: feeds usage billing and dashboards.
CREATE TABLE invocations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    install_id TEXT NOT NULL REFERENCES installs (id),
    plugin_id TEXT NOT NULL,
    version TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    error_message TEXT,
    fuel_used BIGINT NOT NULL,
    peak_memory_bytes BIGINT NOT NULL,
    http_requests BIGINT NOT NULL,
    kv_writes BIGINT NOT NULL,
    denials BIGINT NOT NULL,
    usage TEXT NOT NULL
);
CREATE INDEX invocations_install ON invocations (install_id, started_at);
CREATE INDEX invocations_tenant ON invocations (tenant_id, started_at);

-- Plugin KV data of each install. `kv_scopes.revision` moves on every commit, so a commit
-- based on an older revision (another node committed first) is refused.
CREATE TABLE kv_scopes (
    tenant_id TEXT NOT NULL,
    install_id TEXT NOT NULL,
    revision BIGINT NOT NULL,
    keys BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, install_id)
);
CREATE TABLE kv_entries (
    tenant_id TEXT NOT NULL,
    install_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (tenant_id, install_id, key)
);

-- Responses to creating requests, replayed when a client retries with the same key.
CREATE TABLE idempotency_keys (
    caller TEXT NOT NULL,
    key TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    status BIGINT NOT NULL,
    response TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (caller, key)
);
