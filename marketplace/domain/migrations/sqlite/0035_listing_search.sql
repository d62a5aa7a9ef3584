-- Full-text search of listings: `search_words` holds each listing's words (the id's parts,
-- summary, description and categories, lowercase, split at anything not a letter or digit;
-- `catalog::search_words`), indexed by FTS5 and kept in step by triggers. PostgreSQL's
-- migration indexes the same words as a `tsvector`, so both backends match the same words.
-- The older `search_text` (matched with LIKE) is no longer read; new listings leave it empty.
-- Listings from before this migration are indexed when the marketplace opens.
ALTER TABLE listings ADD COLUMN search_words TEXT NOT NULL DEFAULT '';
-- The index's rowid is the listing's, so a match joins back by rowid without a lookup.
CREATE VIRTUAL TABLE listings_fts USING fts5 (words, tokenize = "unicode61 remove_diacritics 0");
CREATE TRIGGER listings_fts_insert AFTER INSERT ON listings BEGIN
    INSERT INTO listings_fts (rowid, words) VALUES (new.rowid, new.search_words);
END;
CREATE TRIGGER listings_fts_update AFTER UPDATE OF search_words ON listings BEGIN
    DELETE FROM listings_fts WHERE rowid = old.rowid;
    INSERT INTO listings_fts (rowid, words) VALUES (new.rowid, new.search_words);
END;
CREATE TRIGGER listings_fts_delete AFTER DELETE ON listings BEGIN
    DELETE FROM listings_fts WHERE rowid = old.rowid;
END;
