-- The policy's decision per incident, and what generation returned.
ALTER TABLE medic.incidents
    ADD COLUMN route         text CHECK (route IN ('auto', 'approval', 'escalate')),
    ADD COLUMN route_reason  text,
    ADD COLUMN diagnosis_id  bigint REFERENCES medic.diagnoses (id),  -- the diagnosis the decision used
    ADD COLUMN decided_at    timestamptz;
-- the loop guard counts automatic decisions per task in a window
CREATE INDEX incidents_auto_by_task ON medic.incidents (dag_id, task_id, decided_at) WHERE route = 'auto';

ALTER TABLE medic.diagnoses
    ADD COLUMN route       text,
    ADD COLUMN generation  jsonb;  -- backend, model, interpreter, seconds, raw output, refusal reason
