-- A plugin's invocations over a window: its publisher's version health and the partner
-- console's listing table read them by plugin and time, which without this scanned the table.
CREATE INDEX invocations_plugin ON invocations (plugin_id, started_at);
