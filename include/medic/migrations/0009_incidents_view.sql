-- The incidents view: where an incident's approval request waits (the approval task's run and
-- map index in the diagnosis DAG), so the view can link to it without asking Airflow; and the
-- indexes its filters and headline figures read.
ALTER TABLE medic.incidents
    ADD COLUMN approval_run_id       text,
    ADD COLUMN approval_map_index    integer,
    ADD COLUMN approval_requested_at timestamptz;

CREATE INDEX incidents_first_failed ON medic.incidents (first_failed_at);
CREATE INDEX incidents_status ON medic.incidents (status, id DESC);
CREATE INDEX failure_events_failed_at ON medic.failure_events (failed_at);
