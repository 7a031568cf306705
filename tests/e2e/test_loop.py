"""The main loop on the real stack: task fails -> outbox -> trigger -> asset event -> medic_diagnose."""

from __future__ import annotations

import json

import pytest

from medic_dev.examples import PLANTED_PASSWORD
from tests.e2e.helpers import events_of_run, query, wait_filed, wait_for

pytestmark = pytest.mark.e2e


def test_a_failed_task_becomes_an_incident_with_ids_error_and_log_tail(stack, client) -> None:
    run_id = client.trigger("demo_warehouse_load")
    assert client.wait_for_run("demo_warehouse_load", run_id) == "failed"
    events = wait_filed(stack, "demo_warehouse_load", run_id, 1, 90)
    event = events[0]
    assert event["status"] == "processed" and event["try_number"] == 1
    payload = event["payload"]
    assert (payload["dag_id"], payload["run_id"], payload["task_id"]) == (
        "demo_warehouse_load",
        run_id,
        "load_warehouse",
    )
    assert payload["source"] == "task"
    assert payload["exception_type"] == "psycopg.OperationalError"
    assert "Connection refused" in payload["error_message"]
    assert "examples.py" in payload["traceback"]
    # the log tail is the task's real log, rendered, with the careless DSN line scrubbed
    assert "connecting to postgresql://loader:[REDACTED:password]@127.0.0.1:9/warehouse" in payload["log_tail"]

    (incident,) = query(
        stack,
        "SELECT dag_id, task_id, status, exception_type, error_message, event_count FROM medic.incidents WHERE id = %s",
        (event["incident_id"],),
    )
    assert incident[:4] == ("demo_warehouse_load", "load_warehouse", "open", "OperationalError")
    assert "Connection refused" in incident[4]
    # the diagnose run that filed it was started by an asset event of medic_task_failures
    diagnose_run = client.dag_run("medic_diagnose", event["processed_by"])
    assert diagnose_run["run_type"] == "asset_triggered"
    # the planted password is nowhere in medic's database
    leaked = query(
        stack,
        "SELECT count(*) FROM medic.failure_events f LEFT JOIN medic.incidents i"
        " ON i.id = f.incident_id WHERE f.payload::text LIKE %s OR i.error_message LIKE %s",
        (f"%{PLANTED_PASSWORD}%", f"%{PLANTED_PASSWORD}%"),
    )
    assert leaked == [(0,)]


def test_tries_airflow_retries_itself_are_recorded_but_only_the_last_is_diagnosed(stack, client) -> None:
    run_id = client.trigger("demo_flaky_api")
    assert client.wait_for_run("demo_flaky_api", run_id) == "failed"
    events = wait_filed(stack, "demo_flaky_api", run_id, 2, 90)
    first, last = events
    assert (first["try_number"], first["will_retry"], first["status"], first["incident_id"]) == (
        1,
        True,
        "retrying",
        None,
    )
    assert (last["try_number"], last["will_retry"], last["status"]) == (2, False, "processed")


BURST = 12  # three causes, four failures each: three rounds of the stack's 4 parallel tasks


def test_a_burst_of_12_failures_gives_12_events_and_3_incidents(stack, client) -> None:
    """A real Airflow burst: mapped tasks failing through the real listener. Each failure wakes
    a diagnose run of its own on this stack (they run five tasks each on 4 slots), so the burst
    is as small as still shows grouping; test_a_tight_burst_of_30... below is the large one."""
    run_id = client.trigger("demo_burst", conf={"failures": BURST})
    assert client.wait_for_run("demo_burst", run_id, timeout=300) == "failed"
    events = wait_filed(stack, "demo_burst", run_id, BURST, 120)
    assert sorted(e["map_index"] for e in events) == list(range(BURST))
    assert all(e["status"] == "processed" for e in events)
    by_incident: dict[int, int] = {}
    for event in events:
        by_incident[event["incident_id"]] = by_incident.get(event["incident_id"], 0) + 1
    assert sorted(by_incident.values()) == [BURST // 3] * 3  # three causes, as many failures each
    types = query(
        stack,
        "SELECT exception_type, event_count FROM medic.incidents WHERE id = ANY(%s) ORDER BY exception_type",
        (list(by_incident),),
    )
    assert [t for t, _ in types] == ["ConnectionRefusedError", "KeyError", "TimeoutError"]
    assert all(count >= BURST // 3 for _, count in types)


def test_a_person_marking_a_task_failed_is_recorded_as_manual_not_diagnosed(stack, client) -> None:
    run_id = client.trigger("demo_long_running")
    path = f"/api/v2/dags/demo_long_running/dagRuns/{run_id}/taskInstances/wait_for_export"
    wait_for(lambda: client.get(path)["state"] == "running", 120, "the task to be running")
    response = client.request("PATCH", path, json={"new_state": "failed"})
    assert response.status_code == 200, response.text
    events = wait_for(lambda: events_of_run(stack, "demo_long_running", run_id), 60, "the manual failure")
    assert len(events) == 1
    event = events[0]
    assert event["status"] == "manual" and event["incident_id"] is None
    assert event["payload"]["source"] == "api-server" and event["payload"]["manually_failed"]


def test_a_tight_burst_of_30_captures_is_filed_exactly(stack, monkeypatch) -> None:
    """30 failures within about a second, through the listener's own capture path (a real
    Airflow burst on 2 cores spreads over ~13 s because task start-up is CPU-bound)."""
    import threading
    import uuid

    import airflow.sdk  # noqa: F401  (loaded in real task processes; not part of capture time)

    from medic import db
    from medic.capture.listener import capture_failure
    from tests.unit.test_records import FakeTaskInstance

    monkeypatch.setenv("AIRFLOW_CONN_MEDIC_DB", json.dumps(stack.medic_conn()))
    monkeypatch.setenv("AIRFLOW__MEDIC__CONN_ID", "medic_db")
    db._cache.pop("medic_db", None)
    run_id = f"manual__tight_burst_{uuid.uuid4().hex[:8]}"
    causes = [
        TimeoutError("read timed out after 30s"),
        ConnectionRefusedError(111, "Connection refused"),
        KeyError("customer_id"),
    ]
    start = threading.Barrier(30)
    results: list[str] = []

    def fail(index: int) -> None:
        ti = FakeTaskInstance(dag_id="external_burst", run_id=run_id, task_id="shard", map_index=index)
        try:
            raise causes[index % 3]
        except Exception as exc:
            start.wait()
            results.append(capture_failure(ti, exc, source="task"))

    threads = [threading.Thread(target=fail, args=(i,)) for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 30 and all(r.startswith("captured failure") for r in results), results
    events = wait_filed(stack, "external_burst", run_id, 30, 90)
    assert sorted(e["map_index"] for e in events) == list(range(30))
    per_incident: dict[int, int] = {}
    for event in events:
        per_incident[event["incident_id"]] = per_incident.get(event["incident_id"], 0) + 1
    assert sorted(per_incident.values()) == [10, 10, 10]
    spread = query(
        stack,
        "SELECT extract(epoch FROM max(failed_at) - min(failed_at)) FROM medic.failure_events WHERE run_id = %s",
        (run_id,),
    )[0][0]
    print(f"tight burst: 30 failures captured within {float(spread):.2f} s")


@pytest.mark.parametrize(
    ("dag_id", "expected_class", "expected_action"),
    [("demo_missing_input", "missing_input", "fix_data"), ("demo_buggy_transform", "code_bug", "fix_code")],
)
def test_new_incidents_are_diagnosed_from_failure_memory(
    stack, client, dag_id, expected_class, expected_action
) -> None:
    run_id = client.trigger(dag_id)
    client.wait_for_run(dag_id, run_id)
    (event,) = wait_filed(stack, dag_id, run_id, 1, 90)
    rows = wait_for(
        lambda: query(
            stack,
            "SELECT d.error_class, d.action, d.automatic, d.neighbours, i.status, i.route, i.diagnosis_id = d.id"
            " FROM medic.diagnoses d JOIN medic.incidents i ON i.id = d.incident_id"
            " WHERE d.incident_id = %s AND i.route IS NOT NULL",
            (event["incident_id"],),
        ),
        180,
        "the incident's diagnosis",
    )
    assert len(rows) == 1  # diagnosed once, however many events join the incident
    error_class, action, automatic, similar, status, route, decided_on_it = rows[0]
    assert (error_class, action, automatic) == (expected_class, expected_action, False)
    assert status in ("awaiting_approval", "escalated")  # waits in the UI; unanswered, it escalates after 30 s
    assert route == "approval" and decided_on_it  # no backend: the policy decides on the retrieval diagnosis
    assert similar and all(0 <= s["similarity"] <= 1.0001 for s in similar)
    leaked = query(
        stack,
        "SELECT count(*) FROM medic.diagnoses WHERE diagnosis::text LIKE %s OR neighbours::text LIKE %s",
        (f"%{PLANTED_PASSWORD}%", f"%{PLANTED_PASSWORD}%"),
    )
    assert leaked == [(0,)]


def test_a_connection_secret_echoed_by_a_client_never_leaves_the_task(stack, client) -> None:
    from medic_dev.examples import PLANTED_API_KEY

    run_id = client.trigger("demo_partner_api")
    client.wait_for_run("demo_partner_api", run_id)
    (event,) = wait_filed(stack, "demo_partner_api", run_id, 1, 90)
    assert "partner API rejected key [REDACTED:sensitive_value]" in event["payload"]["error_message"]
    wait_for(
        lambda: query(stack, "SELECT 1 FROM medic.diagnoses WHERE incident_id = %s", (event["incident_id"],)),
        180,
        "the diagnosis",
    )
    for table, column in [
        ("failure_events", "payload"),
        ("incidents", "error_message"),
        ("diagnoses", "diagnosis"),
        ("diagnoses", "neighbours"),
        ("knowledge", "text"),
    ]:
        leaked = query(
            stack, f"SELECT count(*) FROM medic.{table} WHERE {column}::text LIKE %s", (f"%{PLANTED_API_KEY}%",)
        )
        assert leaked == [(0,)], f"the planted key leaked into medic.{table}.{column}"
