from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    from medic_dev.stack import Stack

T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    value: Any = None
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last value {value!r}")


def query(stack: Stack, sql: str, params: tuple = ()) -> list[tuple]:
    with stack.connect_postgres("medic", autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def events_of_run(stack: Stack, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    with stack.connect_postgres("medic", autocommit=True) as conn:
        cursor = conn.execute(
            "SELECT id, task_id, map_index, try_number, status, will_retry, incident_id, processed_by,"
            " payload, error FROM medic.failure_events WHERE dag_id = %s AND run_id = %s ORDER BY id",
            (dag_id, run_id),
        )
        names = [c.name for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def settled(events: list[dict[str, Any]], expected: int) -> bool:
    """All expected events captured and none still waiting to be filed."""
    return len(events) == expected and all(e["status"] in ("processed", "retrying", "invalid") for e in events)


def wait_filed(stack: Stack, dag_id: str, run_id: str, expected: int, timeout: float = 90) -> list[dict[str, Any]]:
    """Wait until the run's ``expected`` failures are captured and none is left to file."""
    return wait_for(
        lambda: (e := events_of_run(stack, dag_id, run_id)) and settled(e, expected) and e,
        timeout,
        f"{expected} failure(s) of {dag_id} to be filed",
    )


def run_bench(stack: Stack, name: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    """Run ``medic bench <name>`` against the running stack; its last output line, parsed."""
    import json
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "medic.cli",
            "--home",
            str(stack.home),
            "--port",
            str(stack.api_port),
            "bench",
            name,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **stack.env()},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_sweep(client: Any) -> dict[str, Any]:
    """Trigger ``medic_sweep`` now, wait for it, and return its summary (the task's XCom)."""
    run_id = client.trigger("medic_sweep")
    assert client.wait_for_run("medic_sweep", run_id, timeout=300) == "success"
    return client.get(
        f"/api/v2/dags/medic_sweep/dagRuns/{run_id}/taskInstances/sweep_uncaptured_failures/xcomEntries/return_value"
    )["value"]
