-- Diagnoses, append-only: one row per diagnosis of an incident (retrieval-only or by a model).
CREATE TABLE medic.diagnoses (
    id               bigserial PRIMARY KEY,
    incident_id      bigint      NOT NULL REFERENCES medic.incidents (id),
    source           text        NOT NULL,          -- retrieval | llm:<backend>/<model>
    embedding_model  text,
    error_class      text        NOT NULL,
    action           text        NOT NULL,
    confidence       real        NOT NULL,
    automatic        boolean     NOT NULL,          -- the policy's verdict: may run without a person
    decision_reason  text        NOT NULL,
    diagnosis        jsonb       NOT NULL,          -- the full Diagnosis contract
    neighbours       jsonb       NOT NULL DEFAULT '[]'::jsonb,  -- retrieved entries with similarity
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX diagnoses_incident ON medic.diagnoses (incident_id, created_at DESC);
