-- What an applied invocation answered, kept with its record (`records.rs`) and written in
-- the same transaction: a resent event, a retried request and a look-up of the record
-- return exactly what the first answer said. `outcome_data` is the plugin's data (absent
-- when it returned none or failed); `actions` is a JSON array of {kind, payload}. Both are
-- within the host's output limit (`nexus_host::limits`).
ALTER TABLE invocations ADD COLUMN outcome_data TEXT;
ALTER TABLE invocations ADD COLUMN actions TEXT NOT NULL DEFAULT '[]';
