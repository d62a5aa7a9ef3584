-- Co-marketing (`co_marketing.rs`): featured placements, each a listing featured from
-- `starts_at` until `ends_at` (none: until an operator ends it), within the marketplace's
-- slot count and for partners at or above the tier operators choose. `listings.featured_at`
-- and `featured_note` now follow the placements in force. Listings featured before keep
-- their place as open-ended placements.
CREATE TABLE featured_placements (
    id TEXT PRIMARY KEY,
    plugin_id TEXT NOT NULL,
    note TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX featured_placements_by_plugin ON featured_placements (plugin_id, starts_at);
INSERT INTO featured_placements (id, plugin_id, note, starts_at, ends_at, created_by, created_at)
    SELECT 'fp_' || plugin_id, plugin_id, COALESCE(featured_note, ''), featured_at, NULL, 'migration', featured_at
    FROM listings WHERE featured_at IS NOT NULL;
