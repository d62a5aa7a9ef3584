-- Full-text search of listings: `search_words` holds each listing's words (the id's parts,
-- summary, description and categories, lowercase, split at anything not a letter or digit;
-- `catalog::search_words`), indexed as a `simple` tsvector (no stemming, no stop words: the
-- same words SQLite's FTS5 index holds). The older `search_text` (matched with LIKE) is no
-- longer read; new listings leave it empty. Listings from before this migration are indexed
-- when the marketplace opens.
ALTER TABLE listings ADD COLUMN search_words TEXT NOT NULL DEFAULT '';
ALTER TABLE listings ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', search_words)) STORED;
CREATE INDEX listings_search ON listings USING GIN (search_vector);
