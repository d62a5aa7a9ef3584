-- A listing's pricing comes from the plans it offers (not the manifest's `[[pricing]]`):
-- the models offered, in the plans' names, and the lowest paid price for its card (JSON).
-- Every listing is repriced from its plans at the next start ('' marks one not yet).
ALTER TABLE listings ADD COLUMN price_from TEXT;
UPDATE listings SET pricing_models = '';
