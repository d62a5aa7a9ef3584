-- Development tenants (`dev_versions.rs`): the tenants that may install a publisher's
-- development versions (`1.2.0-dev.N`, published by `nexus dev --marketplace`). No one else
-- ever resolves those versions.
CREATE TABLE dev_tenants (
    publisher TEXT NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (publisher, tenant_id)
);
