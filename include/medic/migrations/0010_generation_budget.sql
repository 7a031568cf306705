-- The generation budget: one row per incident sent to the model, when it was sent. The cap
-- ([medic] max_generations_per_hour) counts the rows of the last hour under an advisory lock,
-- so concurrent diagnose runs cannot both take the last slot; the primary key makes a retried
-- task's second reservation of the same incident free.
CREATE TABLE medic.generation_budget (
    incident_id  bigint      PRIMARY KEY REFERENCES medic.incidents (id),
    reserved_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX generation_budget_recent ON medic.generation_budget (reserved_at);
