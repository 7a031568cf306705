"""The knowledge base: runbooks and verified incidents in PostgreSQL + pgvector.

Entries are embedded with one model at a time and every query is filtered to that model's
id and revision, so vectors of different models are never compared. Upserts are idempotent
on (source_key, model) and skip the embedding work when the text has not changed.
Retrieval is hybrid: incidents with the exact same fingerprint first (the same fault seen
before), then nearest neighbours by cosine similarity (HNSW), each with its similarity.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb

from medic import config
from medic.contract import ACTIONS, ERROR_CLASSES

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    import numpy as np
    import psycopg

    from medic.diagnose.embedding import Embedder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    kind: str  # runbook | incident
    source_key: str
    text: str
    error_class: str | None = None
    action: str | None = None
    auto_safe: bool | None = None
    outcome: str | None = None
    fingerprint: str | None = None
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        basis = "\x1f".join(
            str(v)
            for v in (
                self.text,
                self.error_class,
                self.action,
                self.auto_safe,
                self.outcome,
                self.fingerprint,
                self.title,
            )
        )
        return hashlib.sha256(basis.encode()).hexdigest()


@dataclass(frozen=True)
class Match:
    id: int
    kind: str
    source_key: str
    error_class: str | None
    action: str | None
    auto_safe: bool | None
    outcome: str | None
    title: str | None
    text: str
    similarity: float
    via: str  # fingerprint | vector

    def neighbour(self) -> dict[str, Any]:
        """This match as stored beside a diagnosis and shown in the prompt."""
        return {
            "key": self.source_key,
            "kind": self.kind,
            "class": self.error_class,
            "action": self.action,
            "outcome": self.outcome,
            "auto_safe": self.auto_safe,
            "similarity": round(self.similarity, 4),
            "via": self.via,
        }

    @classmethod
    def from_neighbour(cls, stored: Mapping[str, Any]) -> Match:
        """A match rebuilt from its stored form (what the decision step reads back)."""
        return cls(
            id=0,
            kind=str(stored["kind"]),
            source_key=str(stored["key"]),
            error_class=stored.get("class"),
            action=stored.get("action"),
            auto_safe=stored.get("auto_safe"),
            outcome=stored.get("outcome"),
            title=None,
            text="",
            similarity=float(stored["similarity"]),
            via=str(stored.get("via") or "vector"),
        )


def _prepare(conn: psycopg.Connection) -> None:

    register_vector(conn)


def upsert(conn: psycopg.Connection, embedder: Embedder, entries: Sequence[Entry]) -> dict[str, int]:
    """Insert or update entries for the embedder's model; unchanged ones are not re-embedded."""
    _prepare(conn)
    keys = [e.source_key for e in entries]
    existing: dict[str, str] = dict(
        conn.execute(
            "SELECT source_key, content_hash FROM medic.knowledge"
            " WHERE model_id = %s AND model_revision = %s AND source_key = ANY(%s)",
            (embedder.model_id, embedder.revision, keys),
        ).fetchall()
    )
    changed = [e for e in entries if existing.get(e.source_key) != e.content_hash]
    vectors = embedder.encode([e.text for e in changed])
    with conn.transaction():
        for entry, vector in zip(changed, vectors, strict=True):
            conn.execute(
                """
                INSERT INTO medic.knowledge (kind, source_key, model_id, model_revision, error_class, action,
                    auto_safe, outcome, fingerprint, title, text, content_hash, embedding, metadata)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT ON CONSTRAINT knowledge_source_model DO UPDATE SET
                    kind = EXCLUDED.kind, error_class = EXCLUDED.error_class, action = EXCLUDED.action,
                    auto_safe = EXCLUDED.auto_safe, outcome = EXCLUDED.outcome,
                    fingerprint = EXCLUDED.fingerprint, title = EXCLUDED.title, text = EXCLUDED.text,
                    content_hash = EXCLUDED.content_hash, embedding = EXCLUDED.embedding,
                    metadata = EXCLUDED.metadata, updated_at = now()
                """,
                (
                    entry.kind,
                    entry.source_key,
                    embedder.model_id,
                    embedder.revision,
                    entry.error_class,
                    entry.action,
                    entry.auto_safe,
                    entry.outcome,
                    entry.fingerprint,
                    entry.title,
                    entry.text,
                    entry.content_hash,
                    vector,
                    Jsonb(entry.metadata),
                ),
            )
    return {"embedded": len(changed), "unchanged": len(entries) - len(changed)}


def prune(conn: psycopg.Connection, embedder: Embedder, *, kind: str, keep_keys: Iterable[str]) -> int:
    """Remove entries of ``kind`` that are gone from the source, and every entry of other models."""
    with conn.transaction():
        other_models = conn.execute(
            "DELETE FROM medic.knowledge WHERE model_id <> %s OR model_revision <> %s",
            (embedder.model_id, embedder.revision),
        ).rowcount
        gone = conn.execute(
            "DELETE FROM medic.knowledge WHERE kind = %s AND NOT (source_key = ANY(%s))",
            (kind, list(keep_keys)),
        ).rowcount
    return other_models + gone


_COLUMNS = "id, kind, source_key, error_class, action, auto_safe, outcome, title, text"


def search(
    conn: psycopg.Connection,
    embedder: Embedder,
    vector: np.ndarray,
    *,
    k: int = 8,
    kinds: Sequence[str] = ("runbook", "incident"),
    exclude_keys: Sequence[str] = (),
    ef_search: int = 100,
) -> list[Match]:
    """Top-k neighbours by cosine similarity among entries of this model (HNSW, filtered)."""
    _prepare(conn)
    with conn.transaction():
        conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")  # filters do not starve top-k
        rows = conn.execute(
            f"SELECT {_COLUMNS}, 1 - (embedding <=> %(v)s) AS similarity FROM medic.knowledge"
            " WHERE model_id = %(model)s AND model_revision = %(rev)s AND kind = ANY(%(kinds)s)"
            " AND NOT (source_key = ANY(%(exclude)s))"
            " ORDER BY embedding <=> %(v)s LIMIT %(k)s",
            {
                "v": vector,
                "model": embedder.model_id,
                "rev": embedder.revision,
                "kinds": list(kinds),
                "exclude": list(exclude_keys),
                "k": k,
            },
        ).fetchall()
    return [_match(row, "vector") for row in rows]


def _match(row: Sequence[Any], via: str) -> Match:
    """A knowledge row (``_COLUMNS`` then the similarity) as a match found ``via`` a route."""
    return Match(
        id=row[0],
        kind=row[1],
        source_key=row[2],
        error_class=row[3],
        action=row[4],
        auto_safe=row[5],
        outcome=row[6],
        title=row[7],
        text=row[8],
        similarity=float(row[9]),
        via=via,
    )


def retrieve(
    conn: psycopg.Connection,
    embedder: Embedder,
    *,
    fingerprint: str | None,
    vector: np.ndarray,
    k: int = 8,
    exclude_keys: Sequence[str] = (),
) -> list[Match]:
    """Hybrid: incidents with the same fingerprint first, then vector neighbours; no duplicates."""
    _prepare(conn)
    exact: list[Match] = []
    if fingerprint:
        rows = conn.execute(
            f"SELECT {_COLUMNS}, 1 - (embedding <=> %s) AS similarity FROM medic.knowledge"
            " WHERE fingerprint = %s AND kind = 'incident' AND model_id = %s AND model_revision = %s"
            " AND NOT (source_key = ANY(%s)) ORDER BY updated_at DESC LIMIT %s",
            (vector, fingerprint, embedder.model_id, embedder.revision, list(exclude_keys), k),
        ).fetchall()
        exact = [_match(row, "fingerprint") for row in rows]
    seen = {m.id for m in exact}
    neighbours = [m for m in search(conn, embedder, vector, k=k, exclude_keys=exclude_keys) if m.id not in seen]
    return (exact + neighbours)[:k]


# ---- runbooks ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Runbook:
    path: str
    error_class: str
    title: str
    default_action: str
    auto_safe: bool
    signals: tuple[str, ...]
    examples: tuple[str, ...]
    body: str

    def entries(self) -> list[Entry]:
        """One entry for the runbook's summary and one per typical message (what failures look like)."""
        summary = _first_paragraph(self.body)
        texts = {f"{self.path}#summary": f"{self.title}. {summary}"[:1200]}
        texts.update({f"{self.path}#example-{i}": example for i, example in enumerate(self.examples)})
        return [
            Entry(
                kind="runbook",
                source_key=key,
                text=text,
                error_class=self.error_class,
                action=self.default_action,
                auto_safe=self.auto_safe,
                title=self.title,
            )
            for key, text in texts.items()
        ]


_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n(.*)\Z", re.S)


class RunbookError(ValueError):
    pass


def parse_runbook(path: str, text: str) -> Runbook:

    match = _FRONT_MATTER.match(text)
    if not match:
        raise RunbookError(f"{path}: no YAML front matter")
    meta = yaml.safe_load(match.group(1)) or {}
    error_class, action = meta.get("error_class"), meta.get("default_action")
    if error_class not in ERROR_CLASSES:
        raise RunbookError(f"{path}: error_class {error_class!r} is not one of the {len(ERROR_CLASSES)} classes")
    if action not in ACTIONS:
        raise RunbookError(f"{path}: default_action {action!r} is not an allowed action")
    for pattern in meta.get("signals") or []:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise RunbookError(f"{path}: bad signal pattern {pattern!r}: {exc}") from exc
    return Runbook(
        path=path,
        error_class=error_class,
        title=str(meta.get("title") or error_class),
        default_action=action,
        auto_safe=bool(meta.get("auto_safe", False)),
        signals=tuple(meta.get("signals") or ()),
        examples=tuple(str(e).strip() for e in meta.get("examples") or ()),
        body=match.group(2).strip(),
    )


def runbook_dir() -> Path:
    """Where the runbooks are: ``[medic] runbooks_path`` (a deployment's own), else the ones
    shipped in the package."""
    configured = config.get("runbooks_path")
    candidates = [Path(configured)] if configured else []
    candidates += [
        Path(__file__).resolve().parent / "runbooks",
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise RunbookError(f"no runbook folder found (looked in {', '.join(map(str, candidates))})")


def load_runbooks(directory: Path | None = None) -> list[Runbook]:
    directory = directory or runbook_dir()
    books = [parse_runbook(p.name, p.read_text()) for p in sorted(Path(directory).glob("*.md"))]
    classes = [b.error_class for b in books]
    duplicates = {c for c in classes if classes.count(c) > 1}
    if duplicates:
        raise RunbookError(f"more than one runbook for {sorted(duplicates)}")
    return books


def _first_paragraph(body: str) -> str:
    for block in body.split("\n\n"):
        block = block.strip()
        if block and not block.startswith("#"):
            return " ".join(block.split())
    return ""
