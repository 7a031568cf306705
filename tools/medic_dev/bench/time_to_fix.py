"""medic bench time-to-fix: time from a transient failure to medic's re-run of it running.

Usage: medic [--home DIR] [--port P] bench time-to-fix [--failures N]

The automatic path needs evidence: a verified resolution of the same kind of failure. So the
bench first lets one failure of ``demo_flaky_api`` go through approval (answered by the bench
as the admin user, through the UI's REST endpoint), waits until the re-run is verified and
learned, then fails the same task ``N`` more times, one at a time, and measures each:

* t0 = the final failure (the listener's ``failed_at`` of try 2; Airflow's own retry, try 1,
  is not medic's business);
* t1 = the start of the re-run medic cleared (try 3's ``start_date`` from the REST API).

Starts the embedded stack when it is not running, with the loop guard raised (the bench fails
one task 20+ times an hour on purpose; the guard would otherwise send it to approval after 3),
and stops it afterwards. On a stack that is already running the guard stays as configured.
Prints one line per failure, then a JSON object as the last line (p50_s, p95_s, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from medic.airflow_api import parse_time
from medic.remediate.remediation import APPROVAL_DAG, APPROVAL_TASK
from medic_dev.stats import percentile

if TYPE_CHECKING:
    from medic_dev.stack import Stack

DAG_ID, TASK_ID = "demo_flaky_api", "fetch_orders"


def main(argv: list[str], stack: Stack) -> int:

    parser = argparse.ArgumentParser(prog="medic bench time-to-fix")
    parser.add_argument("--failures", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for each fix")
    args = parser.parse_args(argv)
    if args.failures < 1:
        parser.error("--failures must be at least 1")

    started_here = not all(stack.running().values())
    if started_here:
        stack.extra_env.setdefault("AIRFLOW__MEDIC__LOOP_GUARD_MAX", str(args.failures + 10))
        print(f"bench: starting the embedded stack in {stack.home} (loop guard raised) ...", flush=True)
        stack.up()
    client = stack.client()
    seconds: list[float] = []
    stages: list[dict[str, float]] = []
    try:
        if not _has_verified_precedent(stack):
            print("bench: no verified fix yet: one failure goes through approval first", flush=True)
            _seed_by_approval(stack, client, args.timeout)
        for n in range(1, args.failures + 1):
            run_id = client.trigger(DAG_ID)
            incident_id, failed_at = _wait_incident(stack, run_id, args.timeout)
            route, status = _wait_closed(stack, incident_id, args.timeout)
            if route != "auto" or status != "resolved":
                raise RuntimeError(f"incident {incident_id} went {route} and ended {status}: not the automatic path")
            rerun = next(t for t in client.task_instances(DAG_ID, run_id) if t["task_id"] == TASK_ID)
            t1 = parse_time(rerun["start_date"])
            seconds.append((t1 - failed_at).total_seconds())
            stages.append(_stages(stack, incident_id, failed_at))
            print(
                f"bench: failure {n:>3}/{args.failures}: failure -> re-run running {seconds[-1]:6.2f} s"
                f" (decided {stages[-1]['decided_s']:.2f} s, applied {stages[-1]['applied_s']:.2f} s)",
                flush=True,
            )
    finally:
        client.close()
        if started_here:
            stack.down()
    result = {
        "benchmark": "time-to-fix",
        "path": "automatic (retry after a verified resolution)",
        "failures": len(seconds),
        "p50_s": round(percentile(seconds, 0.5), 3),
        "p95_s": round(percentile(seconds, 0.95), 3),
        "min_s": round(min(seconds), 3),
        "max_s": round(max(seconds), 3),
        "mean_s": round(statistics.fmean(seconds), 3),
        "decided_p50_s": round(percentile([s["decided_s"] for s in stages], 0.5), 3),
        "applied_p50_s": round(percentile([s["applied_s"] for s in stages], 0.5), 3),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
    }
    print(json.dumps(result))
    return 0


def _query(stack: Stack, sql: str, params: tuple = ()) -> list[tuple]:
    with stack.connect_postgres("medic", autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def _has_verified_precedent(stack: Stack) -> bool:
    rows = _query(
        stack,
        "SELECT count(*) FROM medic.incidents i JOIN medic.remediations r ON r.incident_id = i.id"
        " WHERE i.dag_id = %s AND i.task_id = %s AND r.verified_outcome = 'resolved'",
        (DAG_ID, TASK_ID),
    )
    return rows[0][0] > 0


def _wait_incident(stack: Stack, run_id: str, timeout: float) -> tuple[int, datetime]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _query(
            stack,
            "SELECT incident_id, failed_at FROM medic.failure_events WHERE dag_id = %s AND run_id = %s"
            " AND NOT will_retry AND incident_id IS NOT NULL",
            (DAG_ID, run_id),
        )
        if rows:
            return rows[0]
        time.sleep(0.2)
    raise TimeoutError(f"the failure of {DAG_ID}/{run_id} was not filed within {timeout:.0f}s")


def _wait_closed(stack: Stack, incident_id: int, timeout: float, statuses: tuple[str, ...] = ()) -> tuple[str, str]:
    done = statuses or ("resolved", "failed", "rejected", "escalated", "expired", "superseded")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        route, status = _query(stack, "SELECT route, status FROM medic.incidents WHERE id = %s", (incident_id,))[0]
        if status in done:
            return route, status
        time.sleep(0.2)
    raise TimeoutError(f"incident {incident_id} not closed within {timeout:.0f}s")


def _stages(stack: Stack, incident_id: int, failed_at: datetime) -> dict[str, float]:
    decided_at, applied_at = _query(
        stack,
        "SELECT i.decided_at, r.applied_at FROM medic.incidents i JOIN medic.remediations r"
        " ON r.incident_id = i.id WHERE i.id = %s",
        (incident_id,),
    )[0]
    return {
        "decided_s": (decided_at - failed_at).total_seconds(),
        "applied_s": (applied_at - failed_at).total_seconds(),
    }


def _seed_by_approval(stack: Stack, client: Any, timeout: float) -> None:
    run_id = client.trigger(DAG_ID)
    incident_id, _ = _wait_incident(stack, run_id, timeout)
    diagnose_run = _query(
        stack, "SELECT processed_by FROM medic.failure_events WHERE incident_id = %s LIMIT 1", (incident_id,)
    )[0][0]
    deadline = time.monotonic() + timeout
    index = None
    while index is None and time.monotonic() < deadline:
        index = client.awaiting_approval(diagnose_run, incident_id)
        time.sleep(0.5)
    if index is None:
        raise TimeoutError(f"no approval request for incident {incident_id}")
    time.sleep(3)  # answering within ~1 s of parking races the scheduler in Airflow 3.3
    response = client.respond(APPROVAL_DAG, diagnose_run, APPROVAL_TASK, index, "Apply")
    if response.status_code != 200:
        raise RuntimeError(f"approving incident {incident_id} failed: {response.status_code} {response.text[:300]}")
    _, status = _wait_closed(stack, incident_id, timeout)
    if status != "resolved":
        raise RuntimeError(f"the approved fix of incident {incident_id} ended {status}")
    print(f"bench: incident {incident_id} approved, re-run and verified; it is learned on the next diagnosis")
