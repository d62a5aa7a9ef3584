-- Moves whenever something that nodes cache stops being valid (a signing key revoked: the
-- components it verified must be verified again). Every event reads it with its targets, so
-- each node notices on its next event and drops what it cached.
CREATE TABLE cache_generation (
    id INTEGER PRIMARY KEY,
    generation BIGINT NOT NULL
);
INSERT INTO cache_generation (id, generation) VALUES (1, 0);
