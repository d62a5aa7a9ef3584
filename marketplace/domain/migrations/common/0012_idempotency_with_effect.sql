-- Idempotency keys commit with their effect: the key's row is written inside the request's
-- first write transaction (nothing is claimed before), by the request `request_id`; `status`
-- stays 0 until the answer is stored. `location` names the resource the effect created, so
-- an answer lost to a crash between commit and answer is rebuilt from it.
ALTER TABLE idempotency_keys ADD COLUMN request_id TEXT;
ALTER TABLE idempotency_keys ADD COLUMN location TEXT;
