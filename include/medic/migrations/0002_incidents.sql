-- Incidents: one per (fingerprint, dag_id, task_id) episode. While an incident is active,
-- new failures with the same key join it instead of opening another.
CREATE TABLE medic.incidents (
    id               bigserial PRIMARY KEY,
    fingerprint      text        NOT NULL,
    dag_id           text        NOT NULL,
    task_id          text        NOT NULL,
    status           text        NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'diagnosed', 'awaiting_approval', 'remediating',
                                       'resolved', 'failed', 'rejected', 'escalated')),
    exception_type   text,
    signature        text        NOT NULL,             -- the normalised error template
    error_message    text,                             -- first failure's scrubbed message
    first_event_id   bigint      NOT NULL REFERENCES medic.failure_events (id),
    event_count      integer     NOT NULL DEFAULT 0,
    first_failed_at  timestamptz NOT NULL,
    last_failed_at   timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX incidents_one_active
    ON medic.incidents (fingerprint, dag_id, task_id)
    WHERE status IN ('open', 'diagnosed', 'awaiting_approval', 'remediating');
CREATE INDEX incidents_recent ON medic.incidents (created_at DESC);

ALTER TABLE medic.failure_events
    ADD CONSTRAINT failure_events_incident_fk FOREIGN KEY (incident_id) REFERENCES medic.incidents (id);
