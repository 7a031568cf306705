"""medic bench latency: time from a task raising to medic_diagnose's first task starting.

Usage: medic [--home DIR] [--port P] bench latency [--failures N]

Starts the embedded stack if it is not running (and stops it again afterwards). Fails one
task at a time (``demo_missing_input``), so each measurement is independent:

* t0 = when the listener saw the exception, in the failing task's own process (``failed_at``);
* t1 = when ``claim_failure_events`` of the medic_diagnose run that took the event started
  (Airflow's task-instance start_date). If that run was already running when the failure
  happened (a coalesced wake-up), t1 is the moment of the claim instead.

Prints one line per failure, then a JSON object as the last line (p50_s, p95_s, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import TYPE_CHECKING

from medic.airflow_api import parse_time
from medic_dev.stats import percentile

if TYPE_CHECKING:
    from datetime import datetime

    from medic_dev.rest_client import DevRestClient
    from medic_dev.stack import Stack

DAG_ID = "demo_missing_input"


def main(argv: list[str], stack: Stack) -> int:

    parser = argparse.ArgumentParser(prog="medic bench latency")
    parser.add_argument("--failures", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for each failure")
    args = parser.parse_args(argv)
    if args.failures < 1:
        parser.error("--failures must be at least 1")

    started_here = not all(stack.running().values())
    if started_here:
        print(f"bench: starting the embedded stack in {stack.home} ...", flush=True)
        stack.up()
    client = stack.client()
    latencies: list[float] = []
    claim_latencies: list[float] = []
    try:
        for n in range(1, args.failures + 1):
            run_id = client.trigger(DAG_ID)
            row = _wait_claimed(stack, run_id, args.timeout)
            failed_at, claimed_at, owner = row
            start = _first_task_start(client, owner)
            t1 = start if start is not None and start >= failed_at else claimed_at
            latency = (t1 - failed_at).total_seconds()
            latencies.append(latency)
            claim_latencies.append((claimed_at - failed_at).total_seconds())
            print(f"bench: failure {n:>3}/{args.failures}: raise -> diagnose first task {latency:6.2f} s", flush=True)
    finally:
        client.close()
        if started_here:
            stack.down()
    result = {
        "benchmark": "latency",
        "failures": len(latencies),
        "p50_s": round(percentile(latencies, 0.5), 3),
        "p95_s": round(percentile(latencies, 0.95), 3),
        "min_s": round(min(latencies), 3),
        "max_s": round(max(latencies), 3),
        "mean_s": round(statistics.fmean(latencies), 3),
        "claim_p50_s": round(percentile(claim_latencies, 0.5), 3),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
    }
    print(json.dumps(result))
    return 0


def _wait_claimed(stack: Stack, run_id: str, timeout: float) -> tuple[datetime, datetime, str]:
    deadline = time.monotonic() + timeout
    with stack.connect_postgres("medic", autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT failed_at, claimed_at, claim_owner FROM medic.failure_events"
                " WHERE dag_id = %s AND run_id = %s AND claimed_at IS NOT NULL",
                (DAG_ID, run_id),
            ).fetchone()
            if row:
                return row
            time.sleep(0.1)
    raise TimeoutError(f"the failure of {DAG_ID}/{run_id} was not claimed within {timeout:.0f}s")


def _first_task_start(client: DevRestClient, diagnose_run_id: str) -> datetime | None:
    for _ in range(50):
        for ti in client.task_instances("medic_diagnose", diagnose_run_id):
            if ti["task_id"] == "claim_failure_events" and ti.get("start_date"):
                return parse_time(ti["start_date"])
        time.sleep(0.1)
    return None
