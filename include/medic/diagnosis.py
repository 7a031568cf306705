"""Diagnosis: the contract (also the JSON schema an LLM will be given) and the retrieval-only path.

The retrieval-only diagnosis stands when no LLM is configured. It scores the 13 classes from
two kinds of evidence: the signals of each class's runbook found in the failure text, and the
similarity-weighted votes of the nearest knowledge entries (runbook examples and verified past
incidents). The action comes from a verified similar incident when one is close enough, else
from the runbook of the chosen class. Whether it may run automatically is decided by the
two gates of the policy: an auto-safe action backed by a verified similar resolution above
the similarity threshold, and a confidence above its threshold.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from medic.evidence import Evidence
from medic.knowledge import ACTIONS, ERROR_CLASSES, Match, Runbook

ErrorClass = Literal[ERROR_CLASSES]  # type: ignore[valid-type]
Action = Literal[ACTIONS]  # type: ignore[valid-type]
AUTO_SAFE_ACTIONS = frozenset({"retry", "retry_with_backoff"})
TRANSIENT = {"network_transient", "rate_limited", "upstream_unavailable", "worker_lost", "db_contention"}
INTERMITTENT = {"timeout", "resource_exhausted"}


class Diagnosis(BaseModel):
    """A structured diagnosis of one incident (DESIGN "Contracts")."""

    error_class: ErrorClass
    transience: Literal["transient", "intermittent", "permanent", "unknown"]
    root_cause: str = Field(max_length=500)
    evidence: list[str] = Field(default_factory=list, max_length=8)
    action: Action
    action_params: dict[str, int | str | bool] = Field(default_factory=dict)
    confidence: float = Field(ge=0.0, le=1.0)
    explanation: str = Field(max_length=1500)
    similar_incidents: list[str] = Field(default_factory=list, max_length=10)


@dataclass(frozen=True)
class Thresholds:
    """Calibrated with `medic eval` on labelled cases; see docs/DESIGN.md."""

    signal_weight: float = 1.0
    vote_weight: float = 2.0
    vote_sharpness: float = 12.0  # votes grow as exp(sharpness * similarity): near matches dominate
    verified_similarity: float = 0.50  # gate 1: a verified resolution at least this similar (calibrated)
    action_similarity: float = 0.70  # a verified incident this close also decides the action
    auto_confidence: float = 0.65  # every unsafe dev case scored <= 0.45, every automated safe one >= 0.71


@dataclass(frozen=True)
class Decision:
    diagnosis: Diagnosis
    automatic: bool
    reason: str


def _signal_hits(runbook: Runbook, text: str) -> list[str]:
    return [p for p in runbook.signals if re.search(p, text, re.IGNORECASE)]


def class_scores(text: str, matches: Sequence[Match], runbooks: Sequence[Runbook], t: Thresholds) -> dict[str, float]:
    scores: dict[str, float] = defaultdict(float)
    for book in runbooks:
        hits = len(_signal_hits(book, text))
        if hits:
            scores[book.error_class] += t.signal_weight * (1.0 + math.log(hits))
    if matches:
        top = max(m.similarity for m in matches)
        weights = [(m, math.exp(t.vote_sharpness * (m.similarity - top))) for m in matches if m.error_class]
        total = sum(w for _, w in weights) or 1.0
        for match, weight in weights:
            scores[match.error_class] += t.vote_weight * weight / total
    return dict(scores)


def diagnose_from_retrieval(
    evidence: Evidence,
    text: str,
    matches: Sequence[Match],
    runbooks: Sequence[Runbook],
    thresholds: Thresholds | None = None,
) -> Decision:
    t = thresholds or Thresholds()
    scores = class_scores(text, matches, runbooks, t)
    quoted = evidence.lines[-5:] or ([evidence.message] if evidence.message else [])
    if not scores:
        diagnosis = Diagnosis(
            error_class="code_bug",
            transience="unknown",
            root_cause="No runbook signal or similar case matched.",
            evidence=quoted,
            action="escalate",
            confidence=0.0,
            explanation="Nothing in the knowledge base resembles this failure; a person should look at it.",
        )
        return Decision(diagnosis, False, "no evidence")
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    best_class, best = ranked[0]
    confidence = best / sum(scores.values())
    book = next((b for b in runbooks if b.error_class == best_class), None)
    verified = [
        m
        for m in matches
        if m.kind == "incident"
        and m.outcome == "resolved"
        and m.error_class == best_class
        and m.similarity >= t.verified_similarity
    ]
    close = [m for m in verified if m.similarity >= t.action_similarity and m.action]
    if close:
        action = close[0].action
        basis = f"the verified fix of a similar incident ({close[0].source_key}, similarity {close[0].similarity:.2f})"
    else:
        action, basis = (book.default_action if book else "escalate"), f"the runbook for {best_class}"
    transience = (
        "transient" if best_class in TRANSIENT else "intermittent" if best_class in INTERMITTENT else "permanent"
    )
    runner_up = f"; next: {ranked[1][0]} ({ranked[1][1]:.2f})" if len(ranked) > 1 else ""
    diagnosis = Diagnosis(
        error_class=best_class,  # type: ignore[arg-type]
        transience=transience,  # type: ignore[arg-type]
        root_cause=(f"{book.title if book else best_class}: {evidence.exception_type or 'error'}: {evidence.message}")[
            :500
        ],
        evidence=[line[:300] for line in quoted],
        action=action,  # type: ignore[arg-type]
        confidence=round(min(1.0, confidence), 3),
        explanation=(f"Class {best_class} scored {best:.2f}{runner_up}. Action from {basis}.")[:1500],
        similar_incidents=[m.source_key for m in matches if m.kind == "incident"][:10],
    )
    automatic, reason = auto_gate(diagnosis, verified, book, t)
    return Decision(diagnosis, automatic, reason)


def auto_gate(diagnosis: Diagnosis, verified: Sequence[Match], book: Runbook | None, t: Thresholds) -> tuple[bool, str]:
    """The two gates: auto-safe action backed by a verified resolution, and enough confidence."""
    if diagnosis.action not in AUTO_SAFE_ACTIONS or not (book and book.auto_safe):
        return False, f"action {diagnosis.action} needs a person"
    verified = [m for m in verified if m.action in AUTO_SAFE_ACTIONS]
    if not verified:
        return False, "no verified similar resolution by a retry"
    if diagnosis.confidence < t.auto_confidence:
        return False, f"confidence {diagnosis.confidence:.2f} below {t.auto_confidence:.2f}"
    return True, f"verified resolution at similarity {verified[0].similarity:.2f}"
