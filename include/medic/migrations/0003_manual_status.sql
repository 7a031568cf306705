-- A person setting a task instance to failed (UI or REST) is a decision, not a fault to heal:
-- such tries are recorded for the audit trail with status 'manual' and never diagnosed.
ALTER TABLE medic.failure_events DROP CONSTRAINT failure_events_status_check;
ALTER TABLE medic.failure_events ADD CONSTRAINT failure_events_status_check
    CHECK (status IN ('pending', 'retrying', 'processed', 'invalid', 'manual'));
