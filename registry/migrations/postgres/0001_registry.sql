-- Publishers own namespaces; tokens and keys belong to a publisher.
CREATE TABLE publishers (
    name TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE publisher_tokens (
    id TEXT PRIMARY KEY,
    publisher TEXT NOT NULL REFERENCES publishers (name),
    secret_sha256 TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE publisher_keys (
    fingerprint TEXT PRIMARY KEY,
    publisher TEXT NOT NULL REFERENCES publishers (name),
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE plugins (
    id TEXT PRIMARY KEY,
    publisher TEXT NOT NULL REFERENCES publishers (name),
    created_at BIGINT NOT NULL
);

-- One row per name@version, ever: the primary key makes versions immutable, yanked or not.
-- `version_key` is the version without build metadata (1.0.0+a and 1.0.0+b are one version).
CREATE TABLE plugin_versions (
    plugin_id TEXT NOT NULL REFERENCES plugins (id),
    version_key TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    size BIGINT NOT NULL,
    contract TEXT NOT NULL,
    manifest TEXT NOT NULL,
    signature TEXT,
    key_fingerprint TEXT,
    published_at BIGINT NOT NULL,
    yanked_at BIGINT,
    yank_reason TEXT,
    yank_successor TEXT,
    PRIMARY KEY (plugin_id, version_key)
);

-- Artifact bytes for the database-backed store, addressed by sha256.
CREATE TABLE artifacts (
    digest TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    bytes BYTEA NOT NULL
);
