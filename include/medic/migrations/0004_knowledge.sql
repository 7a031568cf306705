-- Failure memory: runbooks and verified incidents, embedded with pgvector.
-- A vector is only ever compared with vectors of the same model id and revision; a model
-- change re-embeds everything (medic_knowledge_refresh). The column is sized for the default
-- model (all-MiniLM-L6-v2, 384 dimensions); a model of another size needs a migration.
CREATE TABLE medic.knowledge (
    id              bigserial PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('runbook', 'incident')),
    source_key      text        NOT NULL,          -- runbook file#chunk, or incident:<id>
    model_id        text        NOT NULL,
    model_revision  text        NOT NULL,
    error_class     text,
    action          text,
    auto_safe       boolean,
    outcome         text        CHECK (outcome IN ('resolved', 'failed')),  -- verified outcome
    fingerprint     text,
    title           text,
    text            text        NOT NULL,          -- what was embedded (scrubbed)
    content_hash    text        NOT NULL,
    embedding       vector(384) NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT knowledge_source_model UNIQUE (source_key, model_id, model_revision)
);

CREATE INDEX knowledge_embedding_hnsw ON medic.knowledge USING hnsw (embedding vector_cosine_ops);
CREATE INDEX knowledge_fingerprint ON medic.knowledge (fingerprint) WHERE fingerprint IS NOT NULL;
CREATE INDEX knowledge_model ON medic.knowledge (model_id, model_revision);
