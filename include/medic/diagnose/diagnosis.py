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
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from medic.diagnose.evidence import Evidence
from medic.diagnose.knowledge import ACTIONS, ERROR_CLASSES, Match, Runbook
from medic.policy.gate import AUTO_SAFE_ACTIONS, Thresholds, decide

ErrorClass = Literal[ERROR_CLASSES]  # type: ignore[valid-type]
Action = Literal[ACTIONS]  # type: ignore[valid-type]
TRANSIENT = {"network_transient", "rate_limited", "upstream_unavailable", "worker_lost", "db_contention"}
INTERMITTENT = {"timeout", "resource_exhausted"}
__all__ = ["AUTO_SAFE_ACTIONS", "Decision", "Diagnosis", "Thresholds", "diagnose_from_retrieval"]

# Texts are printable ASCII without '"' and '\\', each pattern carrying its own bound of at most
# 128. This is what a grammar-constrained decoder (xgrammar 0.2.8, also inside vLLM) enforces
# reliably: it ignores maxLength beside a pattern, lets JSON escapes (a backslash and n) decode
# to control characters, fails to compile repeats over 128 with its cache on (vLLM's default)
# and drops its quote/backslash exclusions from them with the cache off. Bounded texts also
# bound the tokens a model can spend. ``contract_text`` maps any text into this set.
CONTRACT_CHARS = r"[ !#-\[\]-~]"
_OUTSIDE_CONTRACT = re.compile(r"[^ !#-\[\]-~]")


def contract_text(text: str, limit: int) -> str:
    """Any text as the contract allows it: quotes to ', backslashes to /, anything else odd to ?."""
    text = text.replace('"', "'").replace("\\", "/")
    return _OUTSIDE_CONTRACT.sub("?", text)[:limit]


def _text(max_length: int) -> type[str]:
    return Annotated[  # type: ignore[return-value]
        str, StringConstraints(max_length=max_length, pattern=rf"^{CONTRACT_CHARS}{{0,{max_length}}}$")
    ]


class ActionParams(BaseModel):
    """Parameters of the allow-listed actions; only these, validated."""

    model_config = ConfigDict(extra="forbid")
    delay_seconds: int | None = Field(default=None, ge=30, le=86400, description="retry_with_backoff only")


class Diagnosis(BaseModel):
    """A structured diagnosis of one incident (DESIGN "Contracts"); its JSON schema is what a model gets."""

    model_config = ConfigDict(extra="forbid")
    error_class: ErrorClass
    transience: Literal["transient", "intermittent", "permanent", "unknown"]
    root_cause: _text(128)  # type: ignore[valid-type]
    evidence: list[_text(128)] = Field(default_factory=list, max_length=4)  # type: ignore[valid-type]
    action: Action
    action_params: ActionParams = Field(default_factory=ActionParams)
    confidence: float = Field(ge=0.0, le=1.0)
    explanation: _text(128)  # type: ignore[valid-type]
    similar_incidents: list[_text(80)] = Field(default_factory=list, max_length=5)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _params_fit_the_action(self) -> Diagnosis:
        """A delay means something only for retry_with_backoff; elsewhere it is dropped."""
        if self.action != "retry_with_backoff" and self.action_params.delay_seconds is not None:
            self.action_params = ActionParams()
        return self


@dataclass(frozen=True)
class Decision:
    diagnosis: Diagnosis
    automatic: bool
    reason: str
    route: str = "approval"


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
    # The same failure signature, fixed before and verified: the strongest evidence there is.
    for match in matches:
        if (
            match.kind == "incident"
            and match.via == "fingerprint"
            and match.outcome == "resolved"
            and match.error_class
        ):
            scores[match.error_class] += t.recurrence_weight
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
    quoted = evidence.lines[-4:] or ([evidence.message] if evidence.message else [])
    if not scores:
        diagnosis = Diagnosis(
            error_class="code_bug",
            transience="unknown",
            root_cause="No runbook signal or similar case matched.",
            evidence=[contract_text(line, 128) for line in quoted],
            action="escalate",
            confidence=0.0,
            explanation="Nothing in the knowledge base resembles this failure; a person should look at it.",
        )
        return Decision(diagnosis, False, "no evidence", "escalate")
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
        root_cause=contract_text(
            f"{book.title if book else best_class}: {evidence.exception_type or 'error'}: {evidence.message}", 128
        ),
        evidence=[contract_text(line, 128) for line in quoted],
        action=action,  # type: ignore[arg-type]
        confidence=round(min(1.0, confidence), 3),
        explanation=contract_text(f"Class {best_class} scored {best:.2f}{runner_up}. Action from {basis}.", 128),
        similar_incidents=[contract_text(m.source_key, 80) for m in matches if m.kind == "incident"][:5],
    )
    verdict = decide(diagnosis, matches, book, t)
    return Decision(diagnosis, verdict.automatic, verdict.reason, verdict.route)
