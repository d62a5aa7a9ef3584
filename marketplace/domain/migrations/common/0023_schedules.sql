-- Plugins' schedules per install (`runner/schedules.rs`): written with the install's version
-- (at install and at every version change), so a node finds due slots with one indexed read.
-- `next_slot_at` only moves forward, by a guarded update, so one node fires each slot.
CREATE TABLE install_schedules (
    install_id TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    cron TEXT NOT NULL,
    missed TEXT NOT NULL,
    next_slot_at BIGINT NOT NULL,
    PRIMARY KEY (install_id, schedule_id)
);
CREATE INDEX install_schedules_due ON install_schedules (next_slot_at);
