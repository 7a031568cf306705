"""medic's retry policy on the real stack: memory earned through medic's own loop (a seed run,
approved fixes, verified re-runs) decides Airflow's own retries in the worker.

``demo_retry_policy`` retries each task 3 times, 5 minutes apart. After its failures were
verified (the API call resolved by a retry, the transform not fixed by a re-run), a new run's
API call is retried at once with medic's reason kept by Airflow, and its transform (which has
medic's policy only through the cluster policy in the stack's airflow_local_settings.py) fails
at its first try, its failure record saying why, and still goes medic's way as a final failure.
"""

from __future__ import annotations

from typing import Any

import pytest

from medic.airflow_api import parse_time
from medic_dev.bench.time_to_fix import PERMANENT, RP_DAG, TRANSIENT, seed_retry_policy_memory
from tests.e2e.helpers import run_bench, wait_filed, wait_for

pytestmark = pytest.mark.e2e


def finished(client, run_id: str, task_id: str, timeout: float) -> dict[str, Any]:
    """The task instance once it finished; far sooner than its 5-minute retry delay, or the test fails."""

    def probe() -> dict[str, Any] | None:
        ti = next(t for t in client.task_instances(RP_DAG, run_id) if t["task_id"] == task_id)
        return ti if ti["state"] in ("success", "failed") else None

    return wait_for(probe, timeout, f"{RP_DAG}.{task_id} to finish")


def test_verified_memory_retries_a_transient_failure_at_once_and_fails_a_permanent_one_at_try_1(stack, client) -> None:
    seed_retry_policy_memory(stack, client, 300)
    run_id = client.trigger(RP_DAG)
    fetched = finished(client, run_id, TRANSIENT, 150)
    transformed = finished(client, run_id, PERMANENT, 150)

    # the transient failure: retried by Airflow at once (not 5 minutes later), and it worked
    assert (fetched["state"], fetched["try_number"]) == ("success", 2)
    try_1 = client.get(f"/api/v2/dags/{RP_DAG}/dagRuns/{run_id}/taskInstances/{TRANSIENT}/tries/1")
    assert (parse_time(fetched["start_date"]) - parse_time(try_1["end_date"])).total_seconds() < 60
    with stack.connect_postgres("airflow", autocommit=True) as airflow_db:
        (reason,) = airflow_db.execute(
            "SELECT retry_reason FROM task_instance_history WHERE dag_id = %s AND run_id = %s AND task_id = %s"
            " AND try_number = 1",
            (RP_DAG, run_id, TRANSIENT),
        ).fetchone()
    assert reason.startswith("medic: exact recurrence of incident ") and "verified resolved by retry" in reason

    # the permanent failure: failed at its first try of four; the cluster policy gave it medic's policy
    assert (transformed["state"], transformed["try_number"], transformed["max_tries"]) == ("failed", 1, 3)

    # medic's failure records carry each decision; the final failure is diagnosed as any other
    events = {e["task_id"]: e for e in wait_filed(stack, RP_DAG, run_id, 2, 120)}
    retried, failed = events[TRANSIENT], events[PERMANENT]
    assert (retried["try_number"], retried["will_retry"], retried["status"]) == (1, True, "retrying")
    assert retried["payload"]["retry_decision"]["action"] == "retry"
    assert retried["payload"]["retry_decision"]["reason"] == reason
    assert retried["payload"]["retry_decision"]["delay_seconds"] == 0
    assert (failed["try_number"], failed["will_retry"], failed["status"]) == (1, False, "processed")
    decision = failed["payload"]["retry_decision"]
    assert decision["action"] == "fail" and "did not fix" in decision["reason"] and decision["precedents"]
    assert failed["incident_id"] is not None
    assert decision["elapsed_ms"] < 2000


def test_bench_retry_policy_path_prints_a_json_last_line(stack) -> None:
    result = run_bench(stack, "time-to-fix", "--path", "retry-policy", "--failures", "2", "--permanent", "1")
    assert result["path"].startswith("retry-policy") and result["failures"] == 2
    assert result["p50_s"] < result["task_retry_delay_s"] / 5  # retried long before its own delay
    assert (result["permanent_failed_at_first_try"], result["retries_saved"]) == (1, 3)
