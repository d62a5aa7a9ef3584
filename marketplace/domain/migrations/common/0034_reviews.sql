-- Ratings and reviews: one per (plugin, tenant), written by a member of a tenant that ran
-- the plugin. `author` is the person (or token) who last wrote it, `author_name` how it is
-- signed. The publisher's one reply lives on the row; an operator's hiding too (with the
-- reason its author sees). Hidden reviews leave the listing's figures.
CREATE TABLE reviews (
    id TEXT PRIMARY KEY,
    plugin_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    author TEXT NOT NULL,
    author_name TEXT NOT NULL,
    rating BIGINT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    version TEXT NOT NULL,
    helpful BIGINT NOT NULL DEFAULT 0,
    reply TEXT,
    replied_at BIGINT,
    reply_edited_at BIGINT,
    hidden_at BIGINT,
    hidden_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (plugin_id, tenant_id)
);
CREATE INDEX reviews_of_plugin ON reviews (plugin_id, created_at);

-- Who marked which review helpful: one mark per tenant organization per review.
CREATE TABLE review_votes (
    review_id TEXT NOT NULL,
    voter TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (review_id, voter)
);

-- A listing's visible ratings, moved in the transaction of every review change: the cards'
-- average and count, and the ranking's rating term, without reading the reviews.
ALTER TABLE listings ADD COLUMN rating_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE listings ADD COLUMN rating_total BIGINT NOT NULL DEFAULT 0;

-- Fixed-window write limits (`limits.rs`): how many writes a subject made in its window.
CREATE TABLE write_limits (
    subject TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    writes BIGINT NOT NULL
);
