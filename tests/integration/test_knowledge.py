"""Embeddings with the real all-MiniLM-L6-v2 weights and retrieval on real pgvector."""

from __future__ import annotations

import numpy as np
import pytest

from medic.diagnose import knowledge, memory
from medic.diagnose.embedding import DEFAULT_MODEL, Embedder, get_embedder
from medic.diagnose.knowledge import Entry, load_runbooks


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return get_embedder()


def test_the_bundled_weights_load_offline_and_embed_normalised(embedder) -> None:
    assert embedder.model_id == DEFAULT_MODEL and embedder.dimension == 384 and embedder.device == "cpu"
    vectors = embedder.encode(["KeyError: 'customer_id'", "KeyError: 'customer_id'"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert np.allclose(vectors[0], vectors[1], atol=1e-5)
    assert get_embedder() is embedder  # loaded once per process


def test_extracted_errors_separate_failure_families(embedder) -> None:
    refused = memory.prepare("psycopg2.OperationalError: could not connect to server: Connection refused")
    refused_again = memory.prepare(
        "INFO starting load\n"
        "sqlalchemy.exc.OperationalError: connection to server at 10.0.0.3 failed: Connection refused"
    )
    missing = memory.prepare("FileNotFoundError: [Errno 2] No such file or directory: '/data/in/2026-01-01.csv'")
    a, b, c = embedder.encode([refused.embedding_text, refused_again.embedding_text, missing.embedding_text])
    assert float(a @ b) > float(a @ c) + 0.1


def test_upsert_is_idempotent_and_reembeds_only_changes(kb_conn, embedder) -> None:
    entries = [
        Entry(kind="runbook", source_key=f"rb#{i}", text=f"error number {i}", error_class="code_bug") for i in range(3)
    ]
    assert knowledge.upsert(kb_conn, embedder, entries) == {"embedded": 3, "unchanged": 0}
    assert knowledge.upsert(kb_conn, embedder, entries) == {"embedded": 0, "unchanged": 3}
    changed = [*entries[:2], Entry(kind="runbook", source_key="rb#2", text="different", error_class="code_bug")]
    assert knowledge.upsert(kb_conn, embedder, changed) == {"embedded": 1, "unchanged": 2}
    assert kb_conn.execute("SELECT count(*) FROM medic.knowledge").fetchone()[0] == 3


def test_vectors_of_another_model_are_never_returned_and_are_pruned(kb_conn, embedder) -> None:
    knowledge.upsert(kb_conn, embedder, [Entry(kind="runbook", source_key="rb#a", text="Connection refused")])
    other = Embedder(
        model_id="other/model", revision="r1", device="cpu", dimension=384, batch_size=8, _model=embedder._model
    )
    knowledge.upsert(kb_conn, other, [Entry(kind="runbook", source_key="rb#a", text="Connection refused")])
    query = embedder.encode(["Connection refused"])[0]
    found = knowledge.search(kb_conn, embedder, query, k=10)
    assert len(found) == 1 and found[0].similarity > 0.99
    assert knowledge.prune(kb_conn, embedder, kind="runbook", keep_keys=["rb#a"]) == 1  # the other model's row
    assert kb_conn.execute("SELECT DISTINCT model_id FROM medic.knowledge").fetchall() == [(DEFAULT_MODEL,)]


def test_hybrid_retrieval_puts_the_exact_fingerprint_first(kb_conn, embedder) -> None:
    same = memory.prepare("KeyError: 'customer_id'")
    entries = [
        Entry(
            kind="incident",
            source_key="incident:1",
            text="a different text entirely",
            error_class="code_bug",
            action="fix_code",
            outcome="resolved",
            fingerprint=same.fingerprint,
        ),
        Entry(kind="runbook", source_key="rb#k", text="KeyError: 'customer_id'", error_class="code_bug"),
    ]
    knowledge.upsert(kb_conn, embedder, entries)
    vector = embedder.encode([same.embedding_text])[0]
    found = knowledge.retrieve(kb_conn, embedder, fingerprint=same.fingerprint, vector=vector, k=5)
    assert [(m.source_key, m.via) for m in found] == [("incident:1", "fingerprint"), ("rb#k", "vector")]
    assert found[1].similarity > found[0].similarity  # similarity is reported, not faked
    excluded = knowledge.retrieve(
        kb_conn, embedder, fingerprint=same.fingerprint, vector=vector, k=5, exclude_keys=["incident:1"]
    )
    assert [m.source_key for m in excluded] == ["rb#k"]


def test_runbook_refresh_stores_every_class_and_prunes_removed_entries(kb_conn, embedder) -> None:
    books = load_runbooks()
    first = memory.refresh_runbooks(kb_conn, embedder, books)
    assert first["embedded"] == sum(1 + len(b.examples) for b in books)
    classes = {r[0] for r in kb_conn.execute("SELECT DISTINCT error_class FROM medic.knowledge").fetchall()}
    assert len(classes) == 13
    second = memory.refresh_runbooks(kb_conn, embedder, books[1:])
    assert second["embedded"] == 0 and second["pruned"] == 1 + len(books[0].examples)
