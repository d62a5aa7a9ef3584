-- A publisher's verified domain (`publisher_domains.rs`): the publisher claims a domain and
-- is given a token to serve at https://<domain>/.well-known/nexus-verification.txt; a check
-- that finds it verifies the domain, a later check that does not takes the badge away. One
-- domain per publisher; claiming another starts over.
CREATE TABLE publisher_domains (
    publisher TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    token TEXT NOT NULL,
    claimed_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    checked_at BIGINT,
    verified_at BIGINT,
    last_error TEXT
);
