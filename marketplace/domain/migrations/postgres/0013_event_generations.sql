-- What an event reads (its tenant token, its tenant's installs) is cached per node and
-- checked against generations on every event (`runner/views.rs`). The database bumps them
-- in the same transaction as every write that could make a cached copy wrong, so no code
-- path can forget to: any change to a tenant's installs or tokens bumps the tenant's
-- generation; a change to an operator token bumps the marketplace's.
ALTER TABLE tenants ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION installs_bump_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE tenants SET generation = generation + 1 WHERE id = OLD.tenant_id;
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id) THEN
        UPDATE tenants SET generation = generation + 1 WHERE id = NEW.tenant_id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER installs_bump_tenant AFTER INSERT OR UPDATE OR DELETE ON installs
    FOR EACH ROW EXECUTE FUNCTION installs_bump_tenant();

CREATE FUNCTION account_tokens_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.tenant_id IS NULL THEN
        UPDATE cache_generation SET generation = generation + 1 WHERE id = 1;
    ELSE
        UPDATE tenants SET generation = generation + 1 WHERE id = OLD.tenant_id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER account_tokens_bump AFTER UPDATE OR DELETE ON account_tokens
    FOR EACH ROW EXECUTE FUNCTION account_tokens_bump();
