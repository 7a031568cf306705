"""Approval, remediation and verification on the real stack (issue 5's six paths).

Order matters and is part of what is shown: the approved fix of test 2 is verified and
learned, and that verified resolution is what lets test 1's next failure of the same kind be
remediated automatically. Answers go through the same REST endpoint the UI uses, a few seconds
after the approval task parks (answering within ~1 s races the scheduler in Airflow 3.3).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from medic.airflow_api import parse_time
from medic_dev.rest_client import DevRestClient
from medic_dev.stack import SERVICE_USER
from tests.e2e.helpers import query, run_bench, wait_filed, wait_for

pytestmark = pytest.mark.e2e

DIAGNOSE = "medic_diagnose"
APPROVE = "approve_remediation"
ACTIVE = ("open", "diagnosed", "awaiting_approval", "remediating")


def incident_of(stack, dag_id: str, run_id: str, expected_events: int) -> tuple[int, str]:
    """The incident this run's final failure was filed into, and the diagnose run that filed it."""
    events = wait_filed(stack, dag_id, run_id, expected_events, 120)
    final = events[-1]
    assert final["status"] == "processed" and final["incident_id"], final
    return final["incident_id"], final["processed_by"]


def incident(stack, incident_id: int) -> dict[str, Any]:
    rows = query(
        stack,
        "SELECT status, route, route_reason, time_to_fix_seconds, learned_at, first_event_id"
        " FROM medic.incidents WHERE id = %s",
        (incident_id,),
    )
    return dict(zip(("status", "route", "reason", "time_to_fix", "learned_at", "first_event_id"), rows[0], strict=True))


def wait_status(stack, incident_id: int, statuses: tuple[str, ...], timeout: float = 120) -> dict[str, Any]:
    return wait_for(
        lambda: (i := incident(stack, incident_id))["status"] in statuses and i,
        timeout,
        f"incident {incident_id} to reach {statuses}",
    )


def remediations(stack, incident_id: int) -> list[dict[str, Any]]:
    rows = query(
        stack,
        "SELECT decided_by, approver, decision, status, action, params, result, dag_version, verified_outcome"
        " FROM medic.remediations WHERE incident_id = %s",
        (incident_id,),
    )
    keys = ("decided_by", "approver", "decision", "status", "action", "params", "result", "dag_version", "verified")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def parked_approval(client: DevRestClient, diagnose_run: str, incident_id: int, timeout: float = 120) -> int:
    """The map index of the incident's approval task once it waits for input, plus 3 s."""

    def probe() -> int | None:
        index = client.awaiting_approval(diagnose_run, incident_id)
        return None if index is None else index + 1  # +1: map index 0 is falsy

    index = wait_for(probe, timeout, f"the approval of incident {incident_id} to park") - 1
    time.sleep(3)  # the race measured in Airflow 3.3: answer a few seconds after parking
    return index


def settle(stack, client: DevRestClient, dag_id: str) -> None:
    """No active incident of ``dag_id`` left from earlier tests: reject what still waits."""

    def probe() -> bool:
        active = query(
            stack,
            "SELECT i.id, e.processed_by FROM medic.incidents i JOIN medic.failure_events e"
            " ON e.id = i.first_event_id WHERE i.dag_id = %s AND i.status = ANY(%s)",
            (dag_id, list(ACTIVE)),
        )
        for incident_id, diagnose_run in active:
            index = client.awaiting_approval(diagnose_run, incident_id)
            if index is not None:
                client.respond(DIAGNOSE, diagnose_run, APPROVE, index, "Reject")
        return not active

    wait_for(probe, 120, f"earlier incidents of {dag_id} to settle", interval=3)


def task_try(client: DevRestClient, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    return next(t for t in client.task_instances(dag_id, run_id) if t["task_id"] == task_id)


def test_2_approved_fix_is_applied_through_the_api_and_verified(stack, client) -> None:
    settle(stack, client, "demo_flaky_api")
    run_id = client.trigger("demo_flaky_api")
    assert client.wait_for_run("demo_flaky_api", run_id) == "failed"
    incident_id, diagnose_run = incident_of(stack, "demo_flaky_api", run_id, 2)
    assert wait_status(stack, incident_id, ("awaiting_approval",))["route"] == "approval"

    index = parked_approval(client, diagnose_run, incident_id)
    detail = client.hitl_detail(DIAGNOSE, diagnose_run, APPROVE, index)
    assert detail["options"] == ["Apply", "Apply with changes", "Reject", "Escalate"]
    assert [u["id"] for u in detail["assigned_users"]] == ["admin"]
    body = detail["body"]
    assert "network\\_transient" in body and "**Evidence**" in body and "Connection reset by peer" in body
    # the dry run lists the failed task instance applying would clear
    assert "**Dry run:**" in body and "| fetch\\_orders | -1 | failed |" in body
    assert remediations(stack, incident_id) == []  # nothing applied before the answer

    response = client.respond(DIAGNOSE, diagnose_run, APPROVE, index, "Apply")
    assert response.status_code == 200, response.text
    final = wait_status(stack, incident_id, ("resolved", "failed"))
    assert final["status"] == "resolved" and final["time_to_fix"] > 0
    (rem,) = remediations(stack, incident_id)
    assert (rem["decided_by"], rem["approver"], rem["decision"], rem["status"], rem["verified"]) == (
        "user",
        "admin",
        "apply",
        "applied",
        "resolved",
    )
    assert [(c["task_id"], c["run_id"]) for c in rem["result"]["cleared"]] == [("fetch_orders", run_id)]
    assert client.wait_for_run("demo_flaky_api", run_id) == "success"
    fetch = task_try(client, "demo_flaky_api", run_id, "fetch_orders")
    assert (fetch["state"], fetch["try_number"]) == ("success", 3)
    # the fix was medic's re-run (try 3), not Airflow's own retry (try 2, which failed)
    assert query(
        stack,
        "SELECT failed_try, outcome, outcome_try FROM medic.remediation_targets t JOIN medic.remediations r"
        " ON r.id = t.remediation_id WHERE r.incident_id = %s",
        (incident_id,),
    ) == [(2, "resolved", 3)]


def test_1_transient_failure_is_remediated_automatically_after_a_verified_fix(stack, client) -> None:
    # Airflow's own retry that succeeds is never medic's fix: no incident, nothing remediated
    healed = client.trigger("demo_flaky_api", conf={"flaky_until_try": 1})
    assert client.wait_for_run("demo_flaky_api", healed) == "success"
    time.sleep(2)
    assert query(
        stack,
        "SELECT count(*) FROM medic.failure_events WHERE run_id = %s AND incident_id IS NOT NULL",
        (healed,),
    ) == [(0,)]

    settle(stack, client, "demo_flaky_api")
    run_id = client.trigger("demo_flaky_api")
    assert client.wait_for_run("demo_flaky_api", run_id) == "failed"
    incident_id, _ = incident_of(stack, "demo_flaky_api", run_id, 2)
    final = wait_status(stack, incident_id, ("resolved", "failed", "escalated", "awaiting_approval"))
    assert final["route"] == "auto", final
    assert final["reason"].startswith("verified resolution"), final
    final = wait_status(stack, incident_id, ("resolved", "failed"))
    assert final["status"] == "resolved"
    (rem,) = remediations(stack, incident_id)
    assert (rem["decided_by"], rem["approver"], rem["status"], rem["verified"]) == ("auto", None, "applied", "resolved")
    assert client.wait_for_run("demo_flaky_api", run_id) == "success"
    # the earlier approved fix is what the policy relied on: it was learned as verified knowledge
    # the approved fix of test 2 became knowledge: its verification woke medic_knowledge_refresh
    learned = wait_for(
        lambda: query(
            stack,
            "SELECT outcome, action FROM medic.knowledge WHERE kind = 'incident' AND metadata->>'decided_by' = 'user'",
        ),
        180,
        "the verified fix to be learned",
    )
    assert ("resolved", "retry") in learned


def test_3_rejected_approval_applies_nothing(stack, client) -> None:
    settle(stack, client, "demo_missing_input")
    run_id = client.trigger("demo_missing_input")
    assert client.wait_for_run("demo_missing_input", run_id) == "failed"
    incident_id, diagnose_run = incident_of(stack, "demo_missing_input", run_id, 1)
    index = parked_approval(client, diagnose_run, incident_id)
    before = task_try(client, "demo_missing_input", run_id, "load_landing_file")

    assert client.respond(DIAGNOSE, diagnose_run, APPROVE, index, "Reject").status_code == 200
    assert wait_status(stack, incident_id, ("rejected",))["status"] == "rejected"
    (rem,) = remediations(stack, incident_id)
    assert (rem["decision"], rem["status"], rem["approver"]) == ("reject", "recorded", "admin")
    time.sleep(3)
    after = task_try(client, "demo_missing_input", run_id, "load_landing_file")
    assert (after["state"], after["try_number"]) == ("failed", before["try_number"])
    assert client.dag_run("demo_missing_input", run_id)["state"] == "failed"


def test_4_unanswered_approval_times_out_and_applies_nothing(stack, client) -> None:
    settle(stack, client, "demo_missing_input")
    run_id = client.trigger("demo_missing_input")
    assert client.wait_for_run("demo_missing_input", run_id) == "failed"
    incident_id, diagnose_run = incident_of(stack, "demo_missing_input", run_id, 1)
    parked_approval(client, diagnose_run, incident_id)
    before = task_try(client, "demo_missing_input", run_id, "load_landing_file")

    # [medic] approval_timeout_minutes is 0.5 on the test stack, escalate_on_timeout true
    final = wait_status(stack, incident_id, ("escalated", "expired"), timeout=150)
    assert final["status"] == "escalated"
    (rem,) = remediations(stack, incident_id)
    assert (rem["decided_by"], rem["decision"], rem["status"]) == ("timeout", "expire", "recorded")
    after = task_try(client, "demo_missing_input", run_id, "load_landing_file")
    assert (after["state"], after["try_number"]) == ("failed", before["try_number"])


def test_5_6_unassigned_user_gets_403_and_a_second_answer_409_nothing_applied_twice(stack, client) -> None:
    settle(stack, client, "demo_buggy_transform")
    run_id = client.trigger("demo_buggy_transform")
    assert client.wait_for_run("demo_buggy_transform", run_id) == "failed"
    incident_id, diagnose_run = incident_of(stack, "demo_buggy_transform", run_id, 1)
    index = parked_approval(client, diagnose_run, incident_id)
    before = task_try(client, "demo_buggy_transform", run_id, "transform")

    service = DevRestClient(stack.api_url, SERVICE_USER, stack.service_password())
    try:
        denied = service.respond(DIAGNOSE, diagnose_run, APPROVE, index, "Apply")
    finally:
        service.close()
    assert denied.status_code == 403, denied.text
    assert remediations(stack, incident_id) == []

    first = client.respond(DIAGNOSE, diagnose_run, APPROVE, index, "Apply")
    assert first.status_code == 200, first.text
    second = client.respond(DIAGNOSE, diagnose_run, APPROVE, index, "Apply")
    assert second.status_code == 409, second.text

    # the fix (a code fix "deployed", re-run on the latest DAG version) runs once and fails again
    final = wait_status(stack, incident_id, ("resolved", "failed"))
    assert final["status"] == "failed"
    (rem,) = remediations(stack, incident_id)
    assert (rem["action"], rem["status"], rem["verified"]) == ("fix_code", "applied", "failed")
    assert rem["params"]["rerun_on_latest_version"] is True
    assert rem["dag_version"][run_id][0]["version_number"] >= 1
    after = task_try(client, "demo_buggy_transform", run_id, "transform")
    assert after["try_number"] == before["try_number"] + 1

    # the task keeps failing after medic's fix: its next failure is escalated, not retried again
    again = client.trigger("demo_buggy_transform")
    assert client.wait_for_run("demo_buggy_transform", again) == "failed"
    next_incident, _ = incident_of(stack, "demo_buggy_transform", again, 1)
    escalated = wait_status(stack, next_incident, ("escalated", "awaiting_approval"))
    assert escalated["status"] == "escalated" and "keeps failing after remediation" in escalated["reason"]


def test_bench_time_to_fix_prints_a_json_last_line(stack) -> None:
    """The benchmark's path on the real stack (a verified fix exists from test 2): figures only."""
    result = run_bench(stack, "time-to-fix", "--failures", "1")
    assert result["benchmark"] == "time-to-fix" and result["failures"] == 1
    assert 0 < result["decided_p50_s"] <= result["applied_p50_s"] <= result["p50_s"]


def test_7_apply_with_changes_waits_the_edited_backoff_deferred_then_applies(stack, client) -> None:
    settle(stack, client, "demo_warehouse_load")
    run_id = client.trigger("demo_warehouse_load")
    assert client.wait_for_run("demo_warehouse_load", run_id) == "failed"
    incident_id, diagnose_run = incident_of(stack, "demo_warehouse_load", run_id, 1)
    index = parked_approval(client, diagnose_run, incident_id)
    edited = {"delay_seconds": 8, "include_downstream": True, "rerun_on_latest_version": False}
    response = client.respond(DIAGNOSE, diagnose_run, APPROVE, index, "Apply with changes", edited)
    assert response.status_code == 200, response.text
    answered = parse_time(response.json()["responded_at"])

    # while the backoff runs the approval task waits on the triggerer, holding no worker slot
    wait_for(
        lambda: any(
            t["task_id"] == APPROVE and t["map_index"] == index and t["state"] == "deferred"
            for t in client.task_instances(DIAGNOSE, diagnose_run)
        ),
        60,
        "the approval task to defer for the backoff",
        interval=0.3,
    )
    assert remediations(stack, incident_id) == []  # nothing applied during the wait
    wait_status(stack, incident_id, ("remediating", "resolved", "failed"))
    (applied_at,) = query(stack, "SELECT applied_at FROM medic.remediations WHERE incident_id = %s", (incident_id,))[0]
    assert (applied_at - answered).total_seconds() >= 8
    (rem,) = remediations(stack, incident_id)
    assert rem["params"] == edited and rem["approver"] == "admin" and rem["status"] == "applied"


SPEC = Path(__file__).resolve().parents[3] / "shared" / "openlineage-spec"


def _runs(events: list[dict[str, Any]], run_id: str) -> dict[str, dict[str, Any]]:
    return {e["eventType"]: e for e in events if e["run"]["runId"] == run_id}


@pytest.mark.shared("openlineage-spec")  # skips without ../shared; fails in CI (tests/conftest.py)
def test_8_lineage_of_the_automatic_and_approved_fixes_validates_links_the_failed_runs_and_leaks_nothing(
    stack,
) -> None:
    """Everything the provider and medic wrote to the file transport during this session."""
    from medic.lineage import events as lineage
    from medic_dev import lineage_files
    from medic_dev.examples import PLANTED_API_KEY, PLANTED_PASSWORD

    fixed = query(
        stack,
        "SELECT r.incident_id, r.decided_by, r.approver, i.lineage_key FROM medic.remediations r"
        " JOIN medic.incidents i ON i.id = r.incident_id"
        " WHERE i.dag_id = 'demo_flaky_api' AND r.verified_outcome = 'resolved' ORDER BY r.incident_id",
    )
    assert {"auto", "user"} <= {decided_by for _, decided_by, _, _ in fixed}  # tests 1 and 2
    # the verifying try's listener writes each remediation run's end; give the file a moment
    ends = {str(uuid.uuid5(key, lineage.REMEDIATE_JOB)) for _, _, _, key in fixed}
    wait_for(
        lambda: all("COMPLETE" in _runs(lineage_files.read_events(str(stack.lineage_file)), r) for r in ends),
        60,
        "the ends of the remediation runs",
    )
    events = lineage_files.read_events(str(stack.lineage_file))
    validator = lineage_files.Validator(str(SPEC))
    problems = [f"{e['job']['name']} {e['eventType']}: {p}" for e in events for p in validator.problems(e)]
    assert problems == [], problems[:10]
    provider_runs = {(e["job"]["name"], e["run"]["runId"]): e["eventType"] for e in events if e["eventType"] == "FAIL"}

    for incident_id, decided_by, approver, key in fixed:
        diagnose = _runs(events, str(uuid.uuid5(key, lineage.DIAGNOSE_JOB)))
        remediate = _runs(events, str(uuid.uuid5(key, lineage.REMEDIATE_JOB)))
        assert set(diagnose) == {"COMPLETE"} and {"START", "COMPLETE"} <= set(remediate), (incident_id, remediate)
        # every run of the incident hangs under the failed try's own run, as the provider emitted it
        for event in (diagnose["COMPLETE"], remediate["START"], remediate["COMPLETE"]):
            parent = event["run"]["facets"]["parent"]
            assert parent["job"]["name"] == "demo_flaky_api.fetch_orders"
            assert (parent["job"]["name"], parent["run"]["runId"]) in provider_runs, "no FAIL event of the parent run"
        failure = diagnose["COMPLETE"]["run"]["facets"]["medic_failure"]
        assert (failure["incidentId"], failure["tryNumber"]) == (incident_id, 2)
        done = remediate["COMPLETE"]["run"]["facets"]["medic_remediation"]
        assert (done["verifiedOutcome"], done["decidedBy"], done.get("approver")) == ("resolved", decided_by, approver)
        assert [(c["taskId"], c["mapIndex"]) for c in done["cleared"]] == [("fetch_orders", -1)]
        assert done["verifiedBy"][0]["tryNumber"] == 3 and done["timeToFixSeconds"] > 0
        policy = diagnose["COMPLETE"]["run"]["facets"]["medic_decision"]
        if decided_by == "auto":
            assert policy["decision"] == "apply" and policy["decidedBy"] == "policy"
            continue
        assert policy["decision"] == "approval"
        approve = _runs(events, str(uuid.uuid5(key, lineage.APPROVE_JOB)))
        assert approve["START"]["run"]["facets"]["medic_approval"]["assignedUsers"] == ["admin"]
        answer = approve["COMPLETE"]["run"]["facets"]["medic_decision"]
        assert (answer["decidedBy"], answer["user"], answer["option"], answer["decision"]) == (
            "person",
            "admin",
            "Apply",
            "apply",
        )
    # an unanswered approval (test 4) ends its approval run as ABORT, decided by the timeout
    timeouts = [e for e in events if e["job"]["name"] == lineage.APPROVE_JOB and e["eventType"] == "ABORT"]
    assert timeouts and all(e["run"]["facets"]["medic_decision"]["decidedBy"] == "timeout" for e in timeouts)

    text = stack.lineage_file.read_text()
    assert PLANTED_PASSWORD not in text and PLANTED_API_KEY not in text
