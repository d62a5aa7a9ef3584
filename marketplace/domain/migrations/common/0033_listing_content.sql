-- The listing's links (`[links]` of its newest version, JSON) and when its publisher last
-- edited the listing's text between versions (NULL: the text is the newest version's own;
-- the next version's manifest replaces an edit).
ALTER TABLE listings ADD COLUMN links TEXT NOT NULL DEFAULT '{}';
ALTER TABLE listings ADD COLUMN text_edited_at BIGINT;

-- A publisher's public profile beside its listings: its website, where tenants get support,
-- and a Markdown text about it. The name is the registry's `publishers.display_name`.
CREATE TABLE publisher_profiles (
    publisher TEXT PRIMARY KEY,
    website TEXT,
    support TEXT,
    about TEXT NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL
);
