"""The failure-memory path shared by medic_diagnose and `medic eval`: one code path for both.

failure text -> scrub -> evidence -> fingerprint -> embed -> hybrid retrieval -> diagnosis.
Also the knowledge refresh: runbooks embedded and upserted, stale entries and other models'
vectors pruned, so a change of embedding model re-embeds everything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medic import config
from medic.capture.scrub import scrub
from medic.diagnose import knowledge
from medic.diagnose.diagnosis import Opinions, Weights, assess, diagnose
from medic.diagnose.evidence import Evidence, extract
from medic.diagnose.fingerprint import Signature, signature

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg

    from medic.capture.records import FailureRecord
    from medic.contract import Diagnosis
    from medic.diagnose.embedding import Embedder
    from medic.diagnose.knowledge import Match, Runbook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A failure made ready for retrieval: scrubbed text, evidence and fingerprint."""

    text: str
    evidence: Evidence
    signature: Signature  # groups failures into incidents
    embedding_text: str

    @property
    def fingerprint(self) -> str | None:
        """For exact matching; None when the signature is too vague to match anything exactly."""
        return self.signature.fingerprint if self.signature.specific else None


def prepare(text: str, exception_type: str | None = None, message: str = "") -> Prepared:
    clean = scrub(text)
    evidence = extract(clean, exception_type, scrub(message))
    sig = signature(evidence.exception_type, evidence.message, clean)
    return Prepared(clean, evidence, sig, evidence.embedding_text())


def prepare_record(record: FailureRecord) -> Prepared:
    """A stored failure record, prepared: the one derivation of its fingerprint, shared by the
    incident it is filed into and the retrieval that diagnoses it."""
    text = "\n".join(t for t in (record.log_tail, record.traceback) if t) or record.error_message
    return prepare(text, record.exception_type, record.error_message)


def diagnose_prepared(
    conn: psycopg.Connection,
    embedder: Embedder,
    runbooks: Sequence[Runbook],
    items: Sequence[Prepared],
    *,
    exclude_keys: Sequence[Sequence[str]] | None = None,
    weights: Weights | None = None,
) -> list[tuple[Opinions, Diagnosis, list[Match]]]:
    """Diagnose a batch (one embedding call for all of them): each failure's lines of evidence,
    its evidence-only diagnosis, and what retrieval found."""
    vectors = embedder.encode([p.embedding_text for p in items])
    k = config.get_int("retrieval_top_k")
    results = []
    for index, (item, vector) in enumerate(zip(items, vectors, strict=True)):
        excluded = list(exclude_keys[index]) if exclude_keys else []
        matches = knowledge.retrieve(
            conn, embedder, fingerprint=item.fingerprint, vector=vector, k=k, exclude_keys=excluded
        )
        opinions = assess(item.text, matches, runbooks, weights)
        results.append((opinions, diagnose(item.evidence, opinions, matches, runbooks, weights), matches))
    return results


def refresh_runbooks(conn: psycopg.Connection, embedder: Embedder, runbooks: Sequence[Runbook]) -> dict[str, int]:
    entries = [entry for book in runbooks for entry in book.entries()]
    counts = knowledge.upsert(conn, embedder, entries)
    counts["pruned"] = knowledge.prune(conn, embedder, kind="runbook", keep_keys=[e.source_key for e in entries])
    log.info("medic: runbooks refreshed: %s", counts)
    return counts


def ensure_runbooks(conn: psycopg.Connection, embedder: Embedder, runbooks: Sequence[Runbook]) -> bool:
    """Seed the runbooks for this model if they are not all there (first run, model change)."""
    expected = sum(1 + len(book.examples) for book in runbooks)
    row = conn.execute(
        "SELECT count(*) FROM medic.knowledge WHERE kind = 'runbook' AND model_id = %s AND model_revision = %s",
        (embedder.model_id, embedder.revision),
    ).fetchone()
    if row is not None and row[0] == expected:
        return False
    refresh_runbooks(conn, embedder, runbooks)
    return True
