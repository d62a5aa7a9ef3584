-- What an event reads (its tenant token, its tenant's installs) is cached per node and
-- checked against generations on every event (`runner/views.rs`). The database bumps them
-- in the same transaction as every write that could make a cached copy wrong, so no code
-- path can forget to: any change to a tenant's installs or tokens bumps the tenant's
-- generation; a change to an operator token bumps the marketplace's.
ALTER TABLE tenants ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;

CREATE TRIGGER installs_inserted_bump_tenant AFTER INSERT ON installs
BEGIN
    UPDATE tenants SET generation = generation + 1 WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER installs_updated_bump_tenant AFTER UPDATE ON installs
BEGIN
    UPDATE tenants SET generation = generation + 1 WHERE id = NEW.tenant_id OR id = OLD.tenant_id;
END;

CREATE TRIGGER installs_deleted_bump_tenant AFTER DELETE ON installs
BEGIN
    UPDATE tenants SET generation = generation + 1 WHERE id = OLD.tenant_id;
END;

CREATE TRIGGER account_tokens_updated_bump AFTER UPDATE ON account_tokens
BEGIN
    UPDATE tenants SET generation = generation + 1 WHERE id = NEW.tenant_id;
    UPDATE cache_generation SET generation = generation + 1 WHERE id = 1 AND NEW.tenant_id IS NULL;
END;

CREATE TRIGGER account_tokens_deleted_bump AFTER DELETE ON account_tokens
BEGIN
    UPDATE tenants SET generation = generation + 1 WHERE id = OLD.tenant_id;
    UPDATE cache_generation SET generation = generation + 1 WHERE id = 1 AND OLD.tenant_id IS NULL;
END;
