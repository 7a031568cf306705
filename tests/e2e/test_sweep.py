"""medic_sweep on the real stack: a failure no listener saw is found once, diagnosed once; a
re-run whose success the listener never reported is verified from the REST API."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import events_of_run, query, run_sweep, wait_filed, wait_for

pytestmark = pytest.mark.e2e


def test_a_killed_task_process_is_found_by_the_sweep_once_and_diagnosed(stack, client) -> None:
    run_id = client.trigger("demo_killed_worker")
    assert client.wait_for_run("demo_killed_worker", run_id, timeout=180) == "failed"
    (ti,) = client.task_instances("demo_killed_worker", run_id)
    assert ti["state"] == "failed"
    # the SIGKILLed process ran no listener: Airflow knows the failure, medic does not (yet)
    assert events_of_run(stack, "demo_killed_worker", run_id) == []

    wait_for(
        lambda: query(stack, "SELECT now() > %s::timestamptz + interval '6 seconds'", (ti["end_date"],))[0][0],
        30,
        "the sweep's grace period",
    )
    first = run_sweep(client)
    assert first["recorded"] >= 1 and first["problems"] == []
    (event,) = wait_filed(stack, "demo_killed_worker", run_id, 1, 180)
    assert event["payload"]["source"] == "sweep"
    assert "Process terminated by signal" in event["payload"]["error_message"]
    assert "SIGKILL" in event["payload"]["error_message"]

    again = run_sweep(client)  # a second sweep finds it captured: nothing twice
    assert again["recorded"] == 0 and again["already_captured"] >= 1
    assert len(events_of_run(stack, "demo_killed_worker", run_id)) == 1
    _status, error_class, events = wait_for(
        lambda: query(
            stack,
            "SELECT i.status, d.error_class, i.event_count FROM medic.incidents i"
            " JOIN medic.diagnoses d ON d.id = i.diagnosis_id WHERE i.id = %s",
            (event["incident_id"],),
        ),
        180,
        "the swept failure's diagnosis",
    )[0]
    assert error_class == "resource_exhausted"  # the supervisor says: killed, likely out of memory
    assert events == 1


def test_a_rerun_whose_success_no_listener_reported_is_verified_by_the_sweep(stack, client) -> None:
    """A remediation medic applied; its re-run succeeded but the report was lost (the worker was
    killed right after, medic's database was down). The sweep reads the outcome from the API."""
    first = run_sweep(client)  # a run of medic_sweep's own task: a real task instance that succeeded
    assert "seen" in first
    runs = client.get("/api/v2/dags/medic_sweep/dagRuns", order_by="-run_after", limit=1)["dag_runs"]
    run_id = runs[0]["dag_run_id"]
    ti = client.get(f"/api/v2/dags/medic_sweep/dagRuns/{run_id}/taskInstances/sweep_uncaptured_failures")
    assert ti["state"] == "success"
    failed_try = ti["try_number"] - 1
    (incident_id,) = query(
        stack,
        "WITH e AS (INSERT INTO medic.failure_events (dag_id, run_id, task_id, try_number, state, source, payload,"
        "   status, failed_at) VALUES ('medic_sweep', %s, 'sweep_uncaptured_failures', %s, 'failed', 'external',"
        "   '{}', 'processed', now() - interval '5 minutes') RETURNING id)"
        " INSERT INTO medic.incidents (fingerprint, dag_id, task_id, exception_type, signature, error_message,"
        " first_event_id, event_count, first_failed_at, last_failed_at, status)"
        " SELECT 'sweep-test', 'medic_sweep', 'sweep_uncaptured_failures', 'X', 'X: lost report', 'lost report',"
        " e.id, 1, now() - interval '5 minutes', now() - interval '5 minutes', 'remediating' FROM e RETURNING id",
        (run_id, failed_try),
    )[0]
    (remediation_id,) = query(
        stack,
        "INSERT INTO medic.remediations (incident_id, action, decided_by, decision, status, applied_at)"
        " VALUES (%s, 'retry', 'auto', 'apply', 'applied', now() - interval '2 minutes') RETURNING id",
        (incident_id,),
    )[0]
    query(
        stack,
        "INSERT INTO medic.remediation_targets (remediation_id, dag_id, run_id, task_id, map_index, failed_try,"
        " cleared) VALUES (%s, 'medic_sweep', %s, 'sweep_uncaptured_failures', -1, %s, true) RETURNING 1",
        (remediation_id, run_id, failed_try),
    )

    swept = run_sweep(client)
    assert swept["verified"] >= 1
    outcome, status = query(
        stack,
        "SELECT r.verified_outcome, i.status FROM medic.remediations r JOIN medic.incidents i ON i.id = r.incident_id"
        " WHERE r.id = %s",
        (remediation_id,),
    )[0]
    assert (outcome, status) == ("resolved", "resolved")
