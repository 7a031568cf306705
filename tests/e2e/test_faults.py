"""Faults and bad input on the real stack: nothing lost, nothing counted twice, the loop goes on.

The module runs with a 20 s task heartbeat timeout (the session stack's is 60 s, Airflow's 300 s):
a task instance whose supervisor died with a killed scheduler, or gave up while PostgreSQL was
away, is failed (and retried) after that long. Live tasks heartbeat every 5 s, so 20 s is still
four missed heartbeats. The bursts are 8 tasks, 4 at a time (the stack's parallelism): each fault
is asserted to land while the burst is still failing.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from medic_dev.stack import COMPONENTS
from tests.e2e.helpers import events_of_run, query, run_sweep, settled, wait_filed, wait_for

pytestmark = pytest.mark.e2e

BURST = 8  # two rounds of the stack's 4 parallel tasks: a fault lands between them


@pytest.fixture(scope="module")
def stack_settings() -> dict[str, str]:
    """The scheduler fails a task whose supervisor is gone after 20 s instead of a minute."""
    return {"AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20"}


def _burst_event_total(stack) -> int:
    return query(stack, "SELECT coalesce(sum(event_count), 0) FROM medic.incidents WHERE dag_id = 'demo_burst'")[0][0]


def _first_failures_then(stack, client, fault) -> str:
    """Start a burst of BURST failures and, once the first is recorded, ``fault()``; the burst's run.

    Fewer than BURST recorded right after the fault means it hit mid-burst: failures came after
    it, or were lost to it (the PostgreSQL restart), and the test shows medic recovers them."""
    run_id = client.trigger("demo_burst", conf={"failures": BURST})
    wait_for(lambda: events_of_run(stack, "demo_burst", run_id), 120, "the first failure of the burst")
    fault()
    at_fault = len(events_of_run(stack, "demo_burst", run_id))
    assert at_fault < BURST, f"the fault came after the whole burst had failed ({at_fault} of {BURST})"
    return run_id


def _diagnose_in_flight(client) -> bool:
    runs = client.get("/api/v2/dags/medic_diagnose/dagRuns", state=["queued", "running"], limit=50)
    return bool(runs["dag_runs"])


def test_triggerer_killed_mid_burst_every_event_is_filed_exactly_once(stack, client) -> None:
    before = _burst_event_total(stack)
    # mid-stream: the burst is still failing
    run_id = _first_failures_then(stack, client, lambda: stack.kill_component("triggerer", signal.SIGKILL))
    try:
        wait_for(lambda: stack.pid("triggerer") is None, 10, "the triggerer to die")
        assert client.wait_for_run("demo_burst", run_id, timeout=300) == "failed"
        wait_for(lambda: len(events_of_run(stack, "demo_burst", run_id)) == BURST, 60, f"all {BURST} burst failures")
        # Diagnose runs already in flight may still claim part of the burst. Once none is left,
        # a further failure has nobody to wake for it: it is stranded for sure.
        wait_for(lambda: not _diagnose_in_flight(client), 120, "in-flight diagnose runs to finish")
        late_run = client.trigger("demo_missing_input")
        client.wait_for_run("demo_missing_input", late_run)
        late = wait_for(lambda: events_of_run(stack, "demo_missing_input", late_run), 60, "the late failure")
        burst = events_of_run(stack, "demo_burst", run_id)
        stranded = [e["id"] for e in burst + late if e["status"] == "pending"]
        assert late[0]["id"] in stranded
    finally:
        if stack.pid("triggerer") is None:
            stack.start_component("triggerer")

    burst = wait_filed(stack, "demo_burst", run_id, BURST, 180)
    late = wait_filed(stack, "demo_missing_input", late_run, 1, 60)
    assert len(burst + late) == BURST + 1
    assert all(e["status"] == "processed" and e["incident_id"] and e["processed_by"] for e in burst + late)
    assert _burst_event_total(stack) - before == BURST  # each event counted once, none twice


def test_bad_inputs_are_captured_bounded_and_the_loop_keeps_running(stack, client) -> None:
    # a row with a malformed payload lands in the outbox (a bad writer, a manual insert)
    (bad_id,) = query(
        stack,
        "INSERT INTO medic.failure_events (dag_id, run_id, task_id, try_number, state, source, payload, failed_at)"
        " VALUES ('external_writer', 'r-bad', 't', 1, 'failed', 'external', %s, now()) RETURNING id",
        (json.dumps({"dag_id": ["not", "a", "string"]}),),
    )[0:1][0]
    run_id = client.trigger("demo_bad_inputs")  # 20 MB of log, binary bytes, an unprintable error
    assert client.wait_for_run("demo_bad_inputs", run_id, timeout=300) == "failed"
    events = wait_filed(stack, "demo_bad_inputs", run_id, 3, 120)
    by_task = {e["task_id"]: e for e in events}
    assert all(e["status"] == "processed" for e in events)

    huge = by_task["huge_log"]["payload"]
    assert "20 MB of noise" in huge["error_message"]
    assert len(huge["log_tail"]) <= 20_000  # bounded: the tail of a 20 MB log, not the log
    binary = by_task["binary_output"]["payload"]
    assert "corrupt parquet footer" in binary["error_message"]
    assert "\\u0000" not in json.dumps(binary) and "\x00" not in json.dumps(binary)
    unprintable = by_task["unprintable_error"]["payload"]
    assert unprintable["exception_type"].endswith("UnprintableError")
    assert "<unprintable UnprintableError" in unprintable["error_message"]

    status, error = query(stack, "SELECT status, error FROM medic.failure_events WHERE id = %s", (bad_id,))[0]
    assert status == "invalid" and "malformed failure record" in error
    set_aside_logged = any(
        "set aside" in path.read_text(errors="replace")
        for path in (stack.airflow_home / "logs" / "dag_id=medic_diagnose").rglob("*.log")
    )
    assert set_aside_logged, "medic_diagnose's log should say which event was set aside and why"

    # and the loop still works for the next ordinary failure
    after = client.trigger("demo_missing_input")
    client.wait_for_run("demo_missing_input", after)
    wait_for(lambda: settled(events_of_run(stack, "demo_missing_input", after), 1), 90, "the next failure")


def _every_failure_diagnosed_once(
    stack, client, run_id: str, timeout: float = 300, supervise: set[str] | None = None
) -> list[dict]:
    """Each task instance Airflow holds as failed has exactly one outbox event (its last try),
    filed into an incident decided exactly once; and no event was counted twice."""
    failed = [ti for ti in client.task_instances("demo_burst", run_id) if ti["state"] == "failed"]
    assert failed, "the burst should have failed task instances"
    # after a fault, the listener may have missed some: the safety net finds them, once each
    # failure is older than the sweep's grace period (5 s on the test stack)
    time.sleep(6)
    swept = run_sweep(client)
    assert swept["problems"] == []
    tries = {(ti["map_index"], ti["try_number"]) for ti in failed}

    def filed() -> list[dict] | None:
        if supervise is not None:
            _supervised(stack, supervise)
        events = [e for e in events_of_run(stack, "demo_burst", run_id) if not e["will_retry"]]
        keys = {(e["map_index"], e["try_number"]) for e in events}
        return events if tries <= keys and all(e["status"] == "processed" for e in events) else None

    # every try Airflow holds as failed is recorded and filed; a try the task reported failed
    # whose state never reached Airflow (the fault hit first) ran again: its earlier failure is an
    # extra event, which must be an earlier try of a failed task instance, never a duplicate
    events = wait_for(filed, timeout, f"every failure of demo_burst/{run_id} filed")
    last_try = {map_index: try_number for map_index, try_number in tries}
    extra = {(e["map_index"], e["try_number"]) for e in events} - tries
    assert all(try_number < last_try.get(map_index, 0) for map_index, try_number in extra), extra
    incident_ids = sorted({e["incident_id"] for e in events})
    decided = wait_for(
        lambda: (
            (
                rows := query(
                    stack,
                    "SELECT i.id, i.route, (SELECT count(*) FROM medic.diagnoses d WHERE d.incident_id = i.id)"
                    " FROM medic.incidents i WHERE i.id = ANY(%s)",
                    (incident_ids,),
                )
            )
            and all(route for _, route, _ in rows)
            and rows
        ),
        timeout,
        "the burst's incidents decided",
    )
    assert all(count == 1 for _, _, count in decided), decided  # diagnosed once each
    return events


def test_scheduler_killed_mid_burst_every_failure_is_diagnosed_once(stack, client) -> None:
    before = _burst_event_total(stack)
    # its LocalExecutor workers die with it
    run_id = _first_failures_then(stack, client, lambda: stack.kill_component("scheduler", signal.SIGKILL))
    wait_for(lambda: stack.pid("scheduler") is None, 10, "the scheduler to die")
    stack.start_component("scheduler")
    assert client.wait_for_run("demo_burst", run_id, timeout=420) == "failed"
    events = _every_failure_diagnosed_once(stack, client, run_id)
    assert _burst_event_total(stack) - before == len(events)


def test_postgres_restarted_mid_burst_every_failure_is_diagnosed_once(stack, client) -> None:
    before = _burst_event_total(stack)
    # Airflow's metadata and medic's outbox go away and come back
    run_id = _first_failures_then(stack, client, stack.restart_postgres)
    # An Airflow component may exit when its metadata database goes away (the triggerer does:
    # "Exception when executing TriggerRunnerSupervisor.run"). A deployment's supervisor
    # (compose's restart policy, Kubernetes, systemd) starts it again; here the test does.
    restarted: set[str] = set()
    state = wait_for(lambda: _supervised(stack, restarted) and _run_state(client, run_id), 420, "the burst to end")
    assert state == "failed"
    events = _every_failure_diagnosed_once(stack, client, run_id, supervise=restarted)
    assert _burst_event_total(stack) - before == len(events)


def _supervised(stack, restarted: set[str]) -> bool:
    """What a process supervisor does: start again any component that exited."""
    for name in COMPONENTS:
        if stack.pid(name) is None:
            stack.start_component(name)
            restarted.add(name)
    return True


def _run_state(client, run_id: str) -> str | None:
    try:
        state = client.dag_run("demo_burst", run_id)["state"]
    except Exception:  # the api-server may be on its way back up
        return None
    return state if state in ("success", "failed") else None
