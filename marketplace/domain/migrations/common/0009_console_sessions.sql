-- Web console sessions: an API token exchanged for a cookie. Only hashes are kept: the
-- cookie's (so a copy of the database opens no session) and the token's (so every request
-- asks the token's own table again, and revoking or expiring the token ends the session).
CREATE TABLE console_sessions (
    id_sha256 TEXT PRIMARY KEY,
    token_kind TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
