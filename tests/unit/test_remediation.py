"""The approval request and the reading of a person's answer: plain functions, no Airflow."""

from __future__ import annotations

import re

import pytest

from medic.contract import ActionParams, Diagnosis
from medic.remediate import remediation
from medic.remediate.remediation import Plan, RemediationRefused, Target


def plan(action: str = "retry_with_backoff", **changes) -> Plan:
    diagnosis = Diagnosis(
        error_class="rate_limited",
        transience="transient",
        root_cause="429 Too Many Requests from the partner API",
        evidence=["HTTPError: 429 Client Error: Too Many Requests for url: https://api.example.com/v1"],
        action=action,
        action_params=ActionParams(delay_seconds=600) if action == "retry_with_backoff" else ActionParams(),
        confidence=0.7,
        explanation="The API throttled the client.",
    )
    built = remediation.build_plan(
        7,
        "orders",
        "fetch",
        "approval",
        "no verified similar resolution by a retry",
        diagnosis,
        [Target("orders", "manual__1", "fetch", -1, 2)],
        [
            {
                "kind": "incident",
                "key": "incident:3",
                "class": "rate_limited",
                "action": "retry_with_backoff",
                "outcome": "resolved",
                "similarity": 0.82,
            }
        ],
    )
    for key, value in changes.items():
        setattr(built, key, value)
    return built


def test_backoff_delay_comes_from_the_diagnosis_and_code_fixes_rerun_on_the_latest_version() -> None:
    assert plan().delay_seconds == 600
    assert plan("retry").delay_seconds == 0
    assert plan("fix_code").rerun_on_latest_version is True
    assert plan("retry").rerun_on_latest_version is False


def test_apply_uses_the_proposal_and_apply_with_changes_the_edited_values() -> None:
    p = plan()
    edited = {"delay_seconds": 30, "include_downstream": False, "rerun_on_latest_version": False}
    as_proposed = remediation.interpret_response(p, ["Apply"], edited, "ada")
    assert (as_proposed.kind, as_proposed.delay_seconds, as_proposed.include_downstream) == ("apply", 600, True)
    changed = remediation.interpret_response(p, ["Apply with changes"], edited, "ada")
    assert (changed.kind, changed.delay_seconds, changed.include_downstream, changed.approver) == (
        "apply",
        30,
        False,
        "ada",
    )


@pytest.mark.parametrize(
    "params",
    [
        {"delay_seconds": -1},
        {"delay_seconds": 86401},
        {"delay_seconds": "30; rm -rf /"},
        {"delay_seconds": True},
        {"include_downstream": "yes"},
    ],
)
def test_edited_values_outside_the_allowed_range_are_refused(params) -> None:
    with pytest.raises(RemediationRefused):
        remediation.interpret_response(plan(), ["Apply with changes"], params, "ada")


def test_reject_escalate_and_unknown_answers() -> None:
    assert remediation.interpret_response(plan(), ["Reject"], {}, "ada").kind == "reject"
    assert remediation.interpret_response(plan(), ["Escalate"], {}, "ada").kind == "escalate"
    with pytest.raises(RemediationRefused):
        remediation.interpret_response(plan(), ["mark_success"], {}, "ada")
    with pytest.raises(RemediationRefused):
        remediation.interpret_response(plan(), ["Apply", "Reject"], {}, "ada")
    # an action that re-runs nothing can only be recorded, whatever the answer
    assert remediation.interpret_response(plan("escalate"), ["Apply"], {}, "ada").kind == "escalate"


def test_the_body_shows_diagnosis_evidence_similar_and_dry_run_with_log_text_escaped() -> None:
    p = plan(
        evidence=["[click me](http://evil.example) <img src=x onerror=alert(1)> {{ var.value.secret }}"],
        preview=[{"run_id": "manual__1", "task_id": "fetch", "map_index": -1, "state": "failed"}],
    )
    body = remediation.approval_body(p)
    assert "rate\\_limited" in body and "incident:3" in body and "0.82" in body and "delay 600 s" in body
    assert "| manual\\_\\_1 | fetch | -1 | failed |" in body
    # log text cannot make links, HTML or template expressions in the approval
    assert "[click me](" not in body and "{{" not in body
    text = "\n".join(line.removeprefix("> ") for line in body.splitlines())  # quote markers are ours
    assert re.search(r"(?<!\\)[<>]", text) is None  # every angle bracket from the log escaped
    assert "\\[click me\\]\\(http://evil\\.example\\)" in body


def test_an_empty_dry_run_says_the_task_is_no_longer_failed() -> None:
    assert "no longer failed" in remediation.approval_body(plan())


def test_the_form_fields_are_bounded() -> None:
    fields = remediation.approval_params(plan())
    assert fields["delay_seconds"] == {
        "default": 600,
        "type": "integer",
        "minimum": 0,
        "maximum": 86400,
        "description": fields["delay_seconds"]["description"],
    }
    assert {fields[k]["type"] for k in ("include_downstream", "rerun_on_latest_version")} == {"boolean"}


def test_medics_own_dags_are_refused_before_anything_is_touched() -> None:
    own = plan("retry", dag_id="medic_diagnose")
    decision = remediation.automatic_decision(own)
    with pytest.raises(RemediationRefused, match="own DAG"):
        remediation.apply(None, None, own, decision)  # no database, no API: refused first
