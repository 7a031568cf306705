"""The policy: what may happen to an incident without a person. Two gates and two guards.

Gate 1 (evidence, independent of any model): the action is auto-safe (retry or
retry_with_backoff, and the class's runbook allows it) and a *verified* past resolution of
the same class by such a retry is at least ``verified_similarity`` close. Gate 2: the
diagnosis's confidence is at least ``auto_confidence``. Guard 1 (loop): at most
``loop_guard_max`` remediations per task in ``loop_guard_window_minutes``. Guard 2: the DAG
has not opted out with the tag ``manual_tag``. Guard 3: a task whose failure came back after
medic's fix for the same failure is escalated, never retried again. A verified *failed*
resolution at least as close as the best support counts against the fix.

A model can only move an incident *away* from automatic: its output chooses among the
allow-listed actions, and gate 1 needs evidence that no text in a log can forge (a verified
incident in the knowledge base). That is what keeps a prompt injection from granting itself
an automatic action.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from medic.diagnose.diagnosis import Diagnosis
    from medic.diagnose.knowledge import Match, Runbook

AUTO_SAFE_ACTIONS = frozenset({"retry", "retry_with_backoff"})
Route = Literal["auto", "approval", "escalate"]


@dataclass(frozen=True)
class Thresholds:
    """Calibrated with `medic eval --calibrate` on labelled cases; see docs/DESIGN.md."""

    signal_weight: float = 1.0
    vote_weight: float = 2.0
    vote_sharpness: float = 12.0  # votes grow as exp(sharpness * similarity): near matches dominate
    recurrence_weight: float = 3.0  # a verified resolution with the same fingerprint (a recurrence)
    verified_similarity: float = 0.50  # gate 1: a verified resolution at least this similar
    action_similarity: float = 0.70  # a verified incident this close also decides the action
    auto_confidence: float = 0.65  # gate 2

    @classmethod
    def from_config(cls) -> Thresholds:
        from medic import config

        return cls(
            verified_similarity=config.get_float("verified_similarity"),
            auto_confidence=config.get_float("auto_confidence"),
        )


@dataclass(frozen=True)
class Guards:
    """What the policy knows about the task beyond the diagnosis."""

    opted_out: bool = False  # the DAG carries the manual tag
    recent_automatic: int = 0  # remediations of this task inside the window (automatic or approved)
    failed_fix: str | None = None  # a fix medic applied to this task and failure failed: never again
    max_automatic: int = 3
    window_minutes: int = 60

    @classmethod
    def for_task(cls, dag_tags: Sequence[str], recent_automatic: int, failed_fix: str | None = None) -> Guards:
        from medic import config

        return cls(
            opted_out=config.get("manual_tag") in set(dag_tags),
            recent_automatic=recent_automatic,
            failed_fix=failed_fix,
            max_automatic=config.get_int("loop_guard_max"),
            window_minutes=config.get_int("loop_guard_window_minutes"),
        )


@dataclass(frozen=True)
class Verdict:
    route: Route
    reason: str
    support: list[str] = field(default_factory=list)  # the verified incidents gate 1 relied on

    @property
    def automatic(self) -> bool:
        return self.route == "auto"


def verified_support(error_class: str, matches: Sequence[Match], t: Thresholds) -> list[Match]:
    """Verified resolutions of this class by an auto-safe action, close enough to count."""
    return [
        m
        for m in matches
        if m.kind == "incident"
        and m.outcome == "resolved"
        and m.error_class == error_class
        and m.action in AUTO_SAFE_ACTIONS
        and m.similarity >= t.verified_similarity
    ]


def decide(
    diagnosis: Diagnosis,
    matches: Sequence[Match],
    runbook: Runbook | None,
    t: Thresholds,
    guards: Guards | None = None,
) -> Verdict:
    guards = guards or Guards()
    if diagnosis.action == "escalate":
        return Verdict("escalate", "the diagnosis itself escalates")
    if guards.failed_fix:
        return Verdict("escalate", f"keeps failing after remediation: {guards.failed_fix}")
    if diagnosis.action not in AUTO_SAFE_ACTIONS or not (runbook and runbook.auto_safe):
        return Verdict("approval", f"action {diagnosis.action} needs a person")
    support = verified_support(diagnosis.error_class, matches, t)
    if not support:
        return Verdict("approval", "no verified similar resolution by a retry")
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
        return Verdict("approval", f"the same fix failed for a similar incident ({against[0].source_key})", keys)
    if diagnosis.confidence < t.auto_confidence:
        return Verdict("approval", f"confidence {diagnosis.confidence:.2f} below {t.auto_confidence:.2f}", keys)
    if guards.opted_out:
        return Verdict("approval", "the DAG opted out of automatic remediation (tag)", keys)
    if guards.recent_automatic >= guards.max_automatic:
        return Verdict(
            "approval",
            f"loop guard: {guards.recent_automatic} automatic remediations of this task"
            f" in the last {guards.window_minutes} min",
            keys,
        )
    return Verdict("auto", f"verified resolution at similarity {best:.2f}", keys)
