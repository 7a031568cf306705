-- The failure outbox: one row per failed try, written by the listener (or the sweep).
-- The natural key makes capture idempotent: the task process, the scheduler and the
-- api-server may all report the same failure; the richest report wins while it is pending.
CREATE TABLE medic.failure_events (
    id                bigserial PRIMARY KEY,
    dag_id            text        NOT NULL,
    run_id            text        NOT NULL,
    task_id           text        NOT NULL,
    map_index         integer     NOT NULL DEFAULT -1,
    try_number        integer     NOT NULL,
    state             text        NOT NULL,              -- failed | up_for_retry
    will_retry        boolean     NOT NULL DEFAULT false, -- Airflow retries this try itself
    source            text        NOT NULL,              -- task | scheduler | api-server | sweep | ...
    source_rank       smallint    NOT NULL DEFAULT 0,    -- higher = richer report (real exception)
    exception_type    text,
    payload           jsonb       NOT NULL,              -- the scrubbed failure record
    status            text        NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'retrying', 'processed', 'invalid')),
    failed_at         timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- the trigger's lease: an asset event was emitted for this row (wake-up, not ownership)
    signalled_at      timestamptz,
    signal_expires_at timestamptz,
    signal_count      integer     NOT NULL DEFAULT 0,
    -- a diagnose run's lease: ownership of the row until processed or expired
    claimed_at        timestamptz,
    claim_owner       text,
    claim_expires_at  timestamptz,
    claim_attempts    integer     NOT NULL DEFAULT 0,
    processed_at      timestamptz,
    processed_by      text,
    incident_id       bigint,
    error             text,                              -- why the row is invalid
    CONSTRAINT failure_events_natural_key UNIQUE (dag_id, run_id, task_id, map_index, try_number)
);

CREATE INDEX failure_events_pending ON medic.failure_events (id) WHERE status = 'pending';
CREATE INDEX failure_events_incident ON medic.failure_events (incident_id);

-- NOTIFY in the same transaction as the insert: the trigger wakes on commit, never before.
CREATE FUNCTION medic.notify_failure_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'pending' THEN
        PERFORM pg_notify('medic_failure_events', NEW.id::text);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER failure_events_notify
    AFTER INSERT OR UPDATE OF status ON medic.failure_events
    FOR EACH ROW EXECUTE FUNCTION medic.notify_failure_event();
