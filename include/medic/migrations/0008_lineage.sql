-- OpenLineage: every run medic emits for an incident (diagnose, approve, remediate) takes its
-- id from this random key (UUIDv5 of key and job), so the diagnose run, the approval task and
-- the listener that verifies the fix all name the same runs without coordinating.
ALTER TABLE medic.incidents ADD COLUMN lineage_key uuid NOT NULL DEFAULT gen_random_uuid();
