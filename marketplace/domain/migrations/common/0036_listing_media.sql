-- Listing media (`media.rs`). The bytes live in the artifact store under their sha256;
-- `media_files` names every digest ever accepted as a listing image (what `/media/<hex>`
-- serves, never any other artifact), `listing_media` which image each listing shows where:
-- the icon at position 0, screenshots at 1 to 8.
CREATE TABLE media_files (
    digest TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    byte_size BIGINT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE listing_media (
    plugin_id TEXT NOT NULL,
    slot TEXT NOT NULL CHECK (slot IN ('icon', 'screenshot')),
    position BIGINT NOT NULL,
    digest TEXT NOT NULL REFERENCES media_files (digest),
    content_type TEXT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    byte_size BIGINT NOT NULL,
    caption TEXT,
    uploaded_at BIGINT NOT NULL,
    uploaded_by TEXT NOT NULL,
    PRIMARY KEY (plugin_id, slot, position)
);
