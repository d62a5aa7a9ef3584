-- The console's catalog shows the featured listings first on every unfiltered first page:
-- a partial index makes that lookup (and its count) independent of the number of listings.
CREATE INDEX listings_featured ON listings (featured_at) WHERE featured_at IS NOT NULL;
