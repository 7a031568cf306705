-- The independent lines of evidence behind a diagnosis (the failure's own words, retrieval, a
-- verified recurrence), kept so the policy can ask whether they agree and a person can see why.
ALTER TABLE medic.diagnoses
    ADD COLUMN opinions jsonb;
-- The retrieval diagnosis is written before the policy decides; its route is filled in then.
ALTER TABLE medic.diagnoses
    ALTER COLUMN automatic DROP NOT NULL,
    ALTER COLUMN decision_reason DROP NOT NULL;
