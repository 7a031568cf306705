-- Remediation: one decision per incident (automatic or by a person), what it cleared, and
-- the verified outcome of each re-run. The unique incident_id is what makes applying
-- idempotent: a retried task, a second answer or a second diagnose run cannot apply twice.
ALTER TABLE medic.incidents DROP CONSTRAINT incidents_status_check;
ALTER TABLE medic.incidents ADD CONSTRAINT incidents_status_check
    CHECK (status IN ('open', 'diagnosed', 'awaiting_approval', 'remediating', 'resolved', 'failed',
                      'rejected', 'escalated', 'expired', 'superseded'));
ALTER TABLE medic.incidents
    ADD COLUMN resolved_at          timestamptz,   -- when the verified outcome arrived
    ADD COLUMN time_to_fix_seconds  real,          -- last failure -> verified success
    ADD COLUMN learned_at           timestamptz;   -- entered the knowledge base (verified only)

CREATE TABLE medic.remediations (
    id                bigserial PRIMARY KEY,
    incident_id       bigint      NOT NULL REFERENCES medic.incidents (id),
    action            text        NOT NULL,               -- the allow-listed action decided
    params            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    decided_by        text        NOT NULL CHECK (decided_by IN ('auto', 'user', 'timeout')),
    approver          text,                               -- the responding user (HITL), if any
    decision          text        NOT NULL CHECK (decision IN ('apply', 'reject', 'escalate', 'expire')),
    status            text        NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'applied', 'skipped', 'error', 'recorded')),
    result            jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- cleared task instances, reasons
    dag_version       jsonb,                              -- the DAG version the re-run got
    applied_at        timestamptz,
    verified_outcome  text        CHECK (verified_outcome IN ('resolved', 'failed')),
    verified_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT remediations_one_per_incident UNIQUE (incident_id)
);

-- The task instances a remediation re-runs, each verified on its own when it finishes.
CREATE TABLE medic.remediation_targets (
    remediation_id  bigint      NOT NULL REFERENCES medic.remediations (id),
    dag_id          text        NOT NULL,
    run_id          text        NOT NULL,
    task_id         text        NOT NULL,
    map_index       integer     NOT NULL DEFAULT -1,
    failed_try      integer     NOT NULL,              -- the try medic is fixing
    cleared         boolean     NOT NULL DEFAULT false,
    outcome         text        CHECK (outcome IN ('resolved', 'failed')),
    outcome_try     integer,
    started_at      timestamptz,                       -- the re-run's start, when known
    finished_at     timestamptz,
    PRIMARY KEY (remediation_id, run_id, map_index)
);
CREATE INDEX remediation_targets_pending
    ON medic.remediation_targets (dag_id, run_id, task_id, map_index) WHERE outcome IS NULL;
