"""The policy's two gates and two guards, and that a model's output cannot widen them."""

from __future__ import annotations

import pytest

from medic.diagnose.diagnosis import Diagnosis
from medic.diagnose.knowledge import Match, load_runbooks
from medic.policy.gate import Guards, Thresholds, decide

BOOKS = {b.error_class: b for b in load_runbooks()}
T = Thresholds()


def verified(similarity: float, error_class: str = "network_transient", action: str = "retry") -> Match:
    return Match(
        1, "incident", f"incident:{similarity}", error_class, action, True, "resolved", None, "", similarity, "vector"
    )


def diagnosis(action: str = "retry", confidence: float = 0.9, error_class: str = "network_transient") -> Diagnosis:
    return Diagnosis(
        error_class=error_class,
        transience="transient",
        root_cause="connection refused",
        action=action,
        confidence=confidence,
        explanation="x",
    )


def test_auto_needs_both_gates() -> None:
    verdict = decide(diagnosis(), [verified(0.8)], BOOKS["network_transient"], T)
    assert verdict.route == "auto" and verdict.automatic and verdict.support == ["incident:0.8"]


@pytest.mark.parametrize(
    ("d", "matches", "why"),
    [
        (diagnosis(), [], "no verified similar resolution"),
        (diagnosis(), [verified(T.verified_similarity - 0.01)], "no verified similar resolution"),
        (diagnosis(), [verified(0.9, error_class="rate_limited")], "no verified similar resolution"),
        (diagnosis(), [verified(0.9, action="fix_code")], "no verified similar resolution"),
        (diagnosis(confidence=T.auto_confidence - 0.01), [verified(0.9)], "confidence"),
        (diagnosis(action="fix_code"), [verified(0.9)], "needs a person"),
    ],
)
def test_each_gate_alone_sends_it_to_a_person(d: Diagnosis, matches: list[Match], why: str) -> None:
    verdict = decide(d, matches, BOOKS["network_transient"], T)
    assert verdict.route == "approval" and why in verdict.reason


def test_a_retry_for_a_class_whose_runbook_forbids_it_needs_a_person() -> None:
    d = diagnosis(error_class="code_bug")
    verdict = decide(d, [verified(0.95, error_class="code_bug")], BOOKS["code_bug"], T)
    assert verdict.route == "approval"


def test_an_unresolved_or_failed_past_fix_is_no_evidence() -> None:
    failed = Match(1, "incident", "i", "network_transient", "retry", True, "failed", None, "", 0.99, "fingerprint")
    runbook = Match(2, "runbook", "r", "network_transient", "retry", True, None, None, "", 0.99, "vector")
    assert decide(diagnosis(), [failed, runbook], BOOKS["network_transient"], T).route == "approval"


def test_escalate_is_its_own_route() -> None:
    assert decide(diagnosis(action="escalate"), [verified(0.9)], BOOKS["network_transient"], T).route == "escalate"


def test_opt_out_tag_and_loop_guard() -> None:
    book = BOOKS["network_transient"]
    assert "opted out" in decide(diagnosis(), [verified(0.9)], book, T, Guards(opted_out=True)).reason
    guarded = decide(diagnosis(), [verified(0.9)], book, T, Guards(recent_automatic=3, max_automatic=3))
    assert guarded.route == "approval" and "loop guard" in guarded.reason
    assert decide(diagnosis(), [verified(0.9)], book, T, Guards(recent_automatic=2, max_automatic=3)).automatic


def test_guards_read_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__MEDIC__MANUAL_TAG", "hands-off")
    monkeypatch.setenv("AIRFLOW__MEDIC__LOOP_GUARD_MAX", "1")
    guards = Guards.for_task(["team-a", "hands-off"], recent_automatic=0)
    assert guards.opted_out and guards.max_automatic == 1
    assert not Guards.for_task(["medic:manual"], 0).opted_out


def test_delay_only_belongs_to_backoff() -> None:
    d = Diagnosis.model_validate({**diagnosis().model_dump(), "action_params": {"delay_seconds": 60}})
    assert d.action_params.delay_seconds is None
    backoff = Diagnosis.model_validate(
        {**diagnosis(action="retry_with_backoff").model_dump(), "action_params": {"delay_seconds": 60}}
    )
    assert backoff.action_params.delay_seconds == 60


def test_a_task_that_failed_after_medics_fix_is_escalated_not_retried_again() -> None:
    guards = Guards(failed_fix="incident 4: retry by auto failed")
    verdict = decide(diagnosis(), [verified(0.95)], BOOKS["network_transient"], T, guards)
    assert verdict.route == "escalate" and "keeps failing after remediation" in verdict.reason


def test_a_failed_fix_at_least_as_close_counts_against_the_support() -> None:
    failed = Match(2, "incident", "incident:9", "network_transient", "retry", True, "failed", None, "", 0.9, "vector")
    verdict = decide(diagnosis(), [verified(0.8), failed], BOOKS["network_transient"], T)
    assert verdict.route == "approval" and "incident:9" in verdict.reason
    farther = Match(2, "incident", "incident:9", "network_transient", "retry", True, "failed", None, "", 0.6, "vector")
    assert decide(diagnosis(), [verified(0.8), farther], BOOKS["network_transient"], T).route == "auto"


def test_a_verified_recurrence_outweighs_a_stray_runbook_signal() -> None:
    from medic.diagnose.diagnosis import class_scores

    text = "URLError: <urlopen error [Errno 111] Connection refused> GET http://127.0.0.1:9/v1/orders"
    recurrence = Match(
        1, "incident", "incident:1", "network_transient", "retry", True, "resolved", None, "", 1.0, "fingerprint"
    )
    scores = class_scores(text, [recurrence], list(BOOKS.values()), T)
    assert scores["network_transient"] / sum(scores.values()) >= T.auto_confidence
    without = class_scores(text, [], list(BOOKS.values()), T)
    assert without.get("network_transient", 0) / sum(without.values()) < T.auto_confidence
