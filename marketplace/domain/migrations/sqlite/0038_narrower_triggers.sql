-- An install's update bumps its tenant's generation (migration 0013) only when it changes
-- what the event path caches of it (`installs/delivery.rs`, `TARGET_COLUMNS`, and the
-- digest its component is loaded by): a billing run moving `next_bill_at` or
-- `paid_through` for thousands of installs no longer writes as many tenant rows nor empties
-- every node's caches. A column added to the cached target must be added here too.
DROP TRIGGER installs_updated_bump_tenant;

CREATE TRIGGER installs_updated_bump_tenant AFTER UPDATE ON installs
WHEN NEW.tenant_id IS NOT OLD.tenant_id
    OR NEW.plugin_id IS NOT OLD.plugin_id
    OR NEW.version IS NOT OLD.version
    OR NEW.digest IS NOT OLD.digest
    OR NEW.event_types IS NOT OLD.event_types
    OR NEW.grants IS NOT OLD.grants
    OR NEW.config IS NOT OLD.config
    OR NEW.secrets_sealed IS NOT OLD.secrets_sealed
    OR NEW.status IS NOT OLD.status
    OR NEW.status_reason IS NOT OLD.status_reason
    OR NEW.consecutive_failures IS NOT OLD.consecutive_failures
    OR NEW.ordered_delivery IS NOT OLD.ordered_delivery
BEGIN
    UPDATE tenants SET generation = generation + 1 WHERE id = NEW.tenant_id OR id = OLD.tenant_id;
END;
