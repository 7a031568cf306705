"""Diagnosis from evidence alone: independent opinions about the class, combined into a ``Diagnosis``.

Two lines of evidence are kept apart so the policy can ask whether they agree: the failure's
own words (structured facts and runbook signals found in the text) and retrieval (the
similarity-weighted votes of the nearest runbook examples and verified past incidents). A
verified fix of the same fingerprint is a third, strongest line. ``diagnose`` combines them;
it never decides what may happen (that is ``medic.policy``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medic.contract import ERROR_CLASSES, Diagnosis, contract_text, transience_of
from medic.diagnose.facts import parse
from medic.diagnose.scoring import explain

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from medic.diagnose.evidence import Evidence
    from medic.diagnose.knowledge import Match, Runbook


@dataclass(frozen=True)
class Weights:
    """How the lines of evidence are weighed against each other (docs/DESIGN.md, "Diagnosis")."""

    signal: float = 3.0  # structured facts and runbook signals, in total (their shares sum to 1)
    vote: float = 2.0  # retrieval votes, in total
    vote_sharpness: float = 12.0  # votes grow as exp(sharpness * similarity): near matches dominate
    recurrence: float = 3.0  # a verified resolution with the same fingerprint (a recurrence)
    action_similarity: float = 0.70  # a verified incident this close also decides the action


@dataclass(frozen=True)
class Opinion:
    """What one line of evidence says about the class: its best class, that class's share of
    the line's total score, and why."""

    error_class: str | None = None
    share: float = 0.0
    scores: Mapping[str, float] = field(default_factory=dict)
    why: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "class": self.error_class,
            "share": round(self.share, 3),
            "scores": {k: round(v, 3) for k, v in self.scores.items()},
            "why": list(self.why),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Opinion:
        data = data or {}
        scores = {str(k): float(v) for k, v in (data.get("scores") or {}).items() if k in ERROR_CLASSES}
        cls_name = data.get("class")
        return cls(
            error_class=cls_name if cls_name in ERROR_CLASSES else None,
            share=float(data.get("share") or 0.0),
            scores=scores,
            why=tuple(str(w) for w in data.get("why") or ()),
        )


def _opinion(scores: Mapping[str, float], why: Sequence[str]) -> Opinion:
    positive = {k: v for k, v in scores.items() if v > 0}
    if not positive:
        return Opinion(why=tuple(why))
    best = max(positive, key=lambda k: positive[k])
    return Opinion(best, positive[best] / sum(positive.values()), positive, tuple(why))


@dataclass(frozen=True)
class Opinions:
    """The independent lines of evidence about one failure."""

    text: Opinion  # the failure's own words: structured facts and runbook signals
    retrieval: Opinion  # the nearest knowledge entries' votes
    recurrence: str | None = None  # the class of a verified resolution with the same fingerprint

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text.to_json(), "retrieval": self.retrieval.to_json(), "recurrence": self.recurrence}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Opinions:
        data = data or {}
        recurrence = data.get("recurrence")
        return cls(
            Opinion.from_json(data.get("text")),
            Opinion.from_json(data.get("retrieval")),
            recurrence if recurrence in ERROR_CLASSES else None,
        )


def text_opinion(text: str, runbooks: Sequence[Runbook], weights: Weights) -> Opinion:
    """The failure's own words: structured facts (exception types, codes, signals) and runbook signals."""
    found = explain(parse(text), text, runbooks)
    scores = {error_class: weights.signal * share for error_class, share in found.scores.items()}
    best, _ = found.best
    return _opinion(scores, found.reasons(best) if best else [])


def retrieval_opinion(matches: Sequence[Match], weights: Weights) -> Opinion:
    """Similarity-weighted votes of the retrieved entries; the nearest dominate."""
    voters = [m for m in matches if m.error_class]
    if not voters:
        return Opinion()
    top = max(m.similarity for m in voters)
    weighted = [(m, math.exp(weights.vote_sharpness * (m.similarity - top))) for m in voters]
    total = sum(w for _, w in weighted) or 1.0
    scores: dict[str, float] = defaultdict(float)
    for match, weight in weighted:
        scores[str(match.error_class)] += weights.vote * weight / total
    nearest = max(voters, key=lambda m: m.similarity)
    return _opinion(scores, [f"nearest: {nearest.source_key} ({nearest.error_class}, {nearest.similarity:.2f})"])


def recurrence_class(matches: Sequence[Match]) -> str | None:
    """The class of a verified resolution with this very fingerprint: the same fault, fixed before."""
    for match in matches:
        if (
            match.kind == "incident"
            and match.via == "fingerprint"
            and match.outcome == "resolved"
            and match.error_class
        ):
            return match.error_class
    return None


def assess(
    text: str, matches: Sequence[Match], runbooks: Sequence[Runbook], weights: Weights | None = None
) -> Opinions:
    """Each line of evidence's opinion, kept apart for the policy's agreement check."""
    w = weights or Weights()
    return Opinions(text_opinion(text, runbooks, w), retrieval_opinion(matches, w), recurrence_class(matches))


def class_scores(opinions: Opinions, weights: Weights | None = None) -> dict[str, float]:
    """The combined score of each class: the lines of evidence added up."""
    w = weights or Weights()
    scores: dict[str, float] = defaultdict(float)
    for opinion in (opinions.text, opinions.retrieval):
        for error_class, value in opinion.scores.items():
            scores[error_class] += value
    if opinions.recurrence:
        scores[opinions.recurrence] += w.recurrence
    return dict(scores)


def diagnose(
    evidence: Evidence,
    opinions: Opinions,
    matches: Sequence[Match],
    runbooks: Sequence[Runbook],
    weights: Weights | None = None,
) -> Diagnosis:
    """The evidence-only diagnosis: the best-scored class, and its action from a close verified
    fix or else the class's runbook."""
    w = weights or Weights()
    scores = class_scores(opinions, w)
    quoted = evidence.lines[-4:] or ([evidence.message] if evidence.message else [])
    if not scores:
        return Diagnosis(
            error_class="code_bug",
            transience="unknown",
            root_cause="No runbook signal or similar case matched.",
            evidence=[contract_text(line, 128) for line in quoted],
            action="escalate",
            confidence=0.0,
            explanation="Nothing in the knowledge base resembles this failure; a person should look at it.",
        )
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    best_class, best = ranked[0]
    confidence = best / sum(scores.values())
    book = next((b for b in runbooks if b.error_class == best_class), None)
    close = [
        m
        for m in matches
        if m.kind == "incident"
        and m.outcome == "resolved"
        and m.error_class == best_class
        and m.action
        and m.similarity >= w.action_similarity
    ]
    if close:
        action = close[0].action
        basis = f"the verified fix of a similar incident ({close[0].source_key}, similarity {close[0].similarity:.2f})"
    else:
        action, basis = (book.default_action if book else "escalate"), f"the runbook for {best_class}"
    runner_up = f"; next: {ranked[1][0]} ({ranked[1][1]:.2f})" if len(ranked) > 1 else ""
    return Diagnosis.model_validate(
        {
            "error_class": best_class,
            "transience": transience_of(best_class),
            "root_cause": contract_text(
                f"{book.title if book else best_class}: {evidence.exception_type or 'error'}: {evidence.message}", 128
            ),
            "evidence": [contract_text(line, 128) for line in quoted],
            "action": action,
            "confidence": round(min(1.0, confidence), 3),
            "explanation": contract_text(f"Class {best_class} scored {best:.2f}{runner_up}. Action from {basis}.", 128),
            "similar_incidents": [contract_text(m.source_key, 80) for m in matches if m.kind == "incident"][:5],
        }
    )
