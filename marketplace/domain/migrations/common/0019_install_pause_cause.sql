-- Why a paused install is paused, as a value rather than a prefix of its reason text
-- (`installs::PauseCause`): `payment` (its payment retries are used up; it runs again once
-- its tenant settles) or `failures` (the circuit breaker; its tenant resumes it).
ALTER TABLE installs ADD COLUMN paused_for TEXT;
UPDATE installs SET paused_for = 'payment' WHERE status = 'paused' AND status_reason LIKE 'payment\_failed%' ESCAPE '\';
UPDATE installs SET paused_for = 'failures' WHERE status = 'paused' AND paused_for IS NULL;
