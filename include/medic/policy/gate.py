"""The policy: what may happen to an incident without a person, decided once, with every guard.

Automatic only for an auto-safe action (a re-run, and the class's runbook allows it) with one
of two kinds of support: (a) an exact recurrence, a verified resolution by a retry of the same
fingerprint; or (b) a novel failure whose verified support by a retry is close
(``novel_similarity``) and whose class every independent line of evidence names: the
failure's own words, retrieval, and the model when one runs, with the evidence's confidence
above ``auto_confidence``. Then a same-or-closer verified failed fix, and the guards (the
DAG's opt-out tag, the loop guard, a fix that already failed for this task, a failure only the
sweep saw).

A model can only move an incident away from automatic: its class or action never opens a
gate; disagreeing with the evidence sends the incident to a person with the disagreement
shown; its confidence is never the one gated (docs/DESIGN.md, "Policy").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from medic import config
from medic.contract import AUTO_SAFE_ACTIONS, Diagnosis

if TYPE_CHECKING:
    from collections.abc import Sequence

    from medic.diagnose.diagnosis import Opinions
    from medic.diagnose.knowledge import Match, Runbook

Route = Literal["auto", "approval", "escalate"]


@dataclass(frozen=True)
class Thresholds:
    """Calibrated on the similarity distributions of labelled cases; see docs/DESIGN.md."""

    novel_similarity: float = 0.80  # (b): verified support at least this similar
    auto_confidence: float = 0.65  # the evidence's confidence in its class

    @classmethod
    def from_config(cls) -> Thresholds:
        return cls(
            novel_similarity=config.get_float("verified_similarity"),
            auto_confidence=config.get_float("auto_confidence"),
        )


@dataclass(frozen=True)
class Guards:
    """What the policy knows about the task beyond the diagnosis."""

    opted_out: bool = False  # the DAG carries the manual tag
    recent_automatic: int = 0  # remediations of this task inside the window (automatic or approved)
    failed_fix: str | None = None  # a fix medic applied to this task and failure failed: never again
    found_by_sweep: bool = False  # no listener saw the failure: it may be a person's "mark failed"
    max_automatic: int = 3
    window_minutes: int = 60

    @classmethod
    def for_task(
        cls, dag_tags: Sequence[str], recent_automatic: int, failed_fix: str | None = None, *, found_by_sweep: bool
    ) -> Guards:
        return cls(
            opted_out=config.get("manual_tag") in set(dag_tags),
            recent_automatic=recent_automatic,
            failed_fix=failed_fix,
            found_by_sweep=found_by_sweep,
            max_automatic=config.get_int("loop_guard_max"),
            window_minutes=config.get_int("loop_guard_window_minutes"),
        )


@dataclass(frozen=True)
class Evidence:
    """What the policy weighs: the evidence-only diagnosis and the lines of evidence behind it,
    and the model's diagnosis when one ran (``None``: no model, or over the budget)."""

    retrieval: Diagnosis
    opinions: Opinions
    matches: Sequence[Match]
    model: Diagnosis | None = None  # with ``model_problem``: the escalation that says why
    model_problem: str | None = None  # why the model's output was refused (the incident escalates)


@dataclass(frozen=True)
class Verdict:
    route: Route
    reason: str
    diagnosis: Diagnosis  # the diagnosis the decision stands on (the model's, when one ran)
    support: list[str] = field(default_factory=list)  # the verified incidents the gate relied on

    @property
    def automatic(self) -> bool:
        return self.route == "auto"


def _resolved_by_retry(match: Match, error_class: str) -> bool:
    """A verified resolution of this class by a re-run that nobody marked unsafe to repeat alone."""
    return (
        match.kind == "incident"
        and match.outcome == "resolved"
        and match.error_class == error_class
        and match.action in AUTO_SAFE_ACTIONS
        and match.auto_safe is not False
    )


def recurrence_support(error_class: str, matches: Sequence[Match]) -> list[Match]:
    """(a): verified resolutions by a retry of this very fingerprint."""
    return [m for m in matches if m.via == "fingerprint" and _resolved_by_retry(m, error_class)]


def novel_support(error_class: str, matches: Sequence[Match], t: Thresholds) -> list[Match]:
    """(b): verified resolutions by a retry of this class, close enough to count."""
    return [m for m in matches if _resolved_by_retry(m, error_class) and m.similarity >= t.novel_similarity]


def _disagreement(evidence: Evidence) -> str | None:
    """Where the model and the evidence part ways; a person settles it."""
    model, retrieval = evidence.model, evidence.retrieval
    if model is None:
        return None
    if model.error_class != retrieval.error_class:
        return f"the model says {model.error_class}, the evidence says {retrieval.error_class}"
    if model.action != retrieval.action:
        return f"the model says {model.action}, the evidence says {retrieval.action}"
    return None


def _unanimity(error_class: str, opinions: Opinions) -> str | None:
    """Why the independent lines of evidence do not all name ``error_class`` (None: they do)."""
    if opinions.text.error_class is None:
        return "the failure's own words name no class"
    if opinions.text.error_class != error_class:
        return f"the failure's own words say {opinions.text.error_class}, the diagnosis {error_class}"
    if opinions.retrieval.error_class != error_class:
        return f"retrieval says {opinions.retrieval.error_class}, the diagnosis {error_class}"
    return None


def _before_support(
    evidence: Evidence, diagnosis: Diagnosis, runbooks: Sequence[Runbook], guards: Guards
) -> Verdict | None:
    """The routes that need no look at the support: escalations, a person's action, disagreement."""
    if evidence.model_problem is not None:
        return Verdict("escalate", evidence.model_problem, diagnosis)
    if diagnosis.action == "escalate":
        return Verdict("escalate", "the diagnosis itself escalates", diagnosis)
    if guards.failed_fix:
        return Verdict("escalate", f"keeps failing after remediation: {guards.failed_fix}", diagnosis)
    runbook = next((b for b in runbooks if b.error_class == diagnosis.error_class), None)
    if diagnosis.action not in AUTO_SAFE_ACTIONS or not (runbook and runbook.auto_safe):
        return Verdict("approval", f"action {diagnosis.action} needs a person", diagnosis)
    disagreement = _disagreement(evidence)
    if disagreement:
        return Verdict("approval", f"disagreement: {disagreement}", diagnosis)
    return None


def decide(evidence: Evidence, runbooks: Sequence[Runbook], t: Thresholds, guards: Guards | None = None) -> Verdict:
    """The one decision for an incident: auto, approval or escalate, and why."""
    guards = guards or Guards()
    diagnosis = evidence.model or evidence.retrieval
    early = _before_support(evidence, diagnosis, runbooks, guards)
    if early is not None:
        return early
    matches = evidence.matches
    support = recurrence_support(diagnosis.error_class, matches)
    kind = " (a recurrence: same fingerprint)"
    if not support:
        kind = ""
        support = novel_support(diagnosis.error_class, matches, t)
        if not support:
            return Verdict("approval", "no verified similar resolution by a retry", diagnosis)
        split = _unanimity(diagnosis.error_class, evidence.opinions)
        if split:
            return Verdict("approval", f"evidence not unanimous: {split}", diagnosis, [m.source_key for m in support])
    keys = [m.source_key for m in support]
    best = max(m.similarity for m in support)
    against = [
        m
        for m in matches
        if m.kind == "incident"
        and m.outcome == "failed"
        and m.error_class == diagnosis.error_class
        and m.action == diagnosis.action
        and m.similarity >= best
    ]
    if against:
        return Verdict(
            "approval", f"the same fix failed for a similar incident ({against[0].source_key})", diagnosis, keys
        )
    confidence = evidence.retrieval.confidence
    if not kind and confidence < t.auto_confidence:  # a recurrence's support is the same fault, fixed
        return Verdict("approval", f"confidence {confidence:.2f} below {t.auto_confidence:.2f}", diagnosis, keys)
    return _guarded(diagnosis, guards, f"verified resolution at similarity {best:.2f}{kind}", keys)


def _guarded(diagnosis: Diagnosis, guards: Guards, support: str, keys: list[str]) -> Verdict:
    """The last word: the task's own guards, then automatic."""
    if guards.opted_out:
        return Verdict("approval", "the DAG opted out of automatic remediation (tag)", diagnosis, keys)
    if guards.recent_automatic >= guards.max_automatic:
        return Verdict(
            "approval",
            f"loop guard: {guards.recent_automatic} automatic remediations of this task"
            f" in the last {guards.window_minutes} min",
            diagnosis,
            keys,
        )
    if guards.found_by_sweep:
        return Verdict("approval", f"{support}; found by the sweep: a person confirms", diagnosis, keys)
    return Verdict("auto", support, diagnosis, keys)
