"""medic bench time-to-fix: time from a transient failure to its re-run (or retry) running.

Usage: medic [--home DIR] [--port P] bench time-to-fix [--path clear|retry-policy] [--failures N]
       [--permanent K]

``--path clear`` (the default), medic's clear path: the automatic path needs evidence, a verified
resolution of the same kind of failure. So the bench first lets one failure of ``demo_flaky_api``
go through approval (answered by the bench as the admin user, through the UI's REST endpoint),
waits until the re-run is verified and learned, then fails the same task ``N`` more times, one at
a time, and measures each:

* t0 = the final failure (the listener's ``failed_at`` of try 2; Airflow's own retry, try 1,
  is not medic's business);
* t1 = the start of the re-run medic cleared (try 3's ``start_date`` from the REST API).

``--path retry-policy``, medic's retry policy (``medic.policy.retry``) inside Airflow's own
retries: ``demo_retry_policy`` retries each task 3 times, 5 minutes apart. Its memory is earned
first, the way medic earns it: one run of ``demo_retry_policy_seed`` (the same task code, no
retries) fails both tasks; the bench approves both fixes (the API call's to re-run now, with
"Apply with changes" and no delay, should medic have proposed a backoff); the refused API
call's re-run succeeds (verified resolved by a retry), the transform's fails (verified not fixed
by a re-run). Then ``N`` runs of ``demo_retry_policy`` in which only the API call fails (its first try), one at a
time, each measured:

* t0 = the transient failure: when the policy was asked, right after the task raised (its
  ``evaluated_at``, kept in the failure record the listener captured for try 1);
* t1 = the start of try 2 (``start_date`` from the REST API), which the task's own retry_delay
  would have put 5 minutes later;

then ``--permanent K`` runs (default 3) in which only the transform fails (``retries=3``): the
try it failed at, and the retries (and the retry_delay waits) that saved.

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
    from medic_dev.rest_client import DevRestClient
    from medic_dev.stack import Stack

DAG_ID, TASK_ID = "demo_flaky_api", "fetch_orders"


def main(argv: list[str], stack: Stack) -> int:

    parser = argparse.ArgumentParser(prog="medic bench time-to-fix")
    parser.add_argument("--path", choices=("clear", "retry-policy"), default="clear")
    parser.add_argument("--failures", type=int, default=20)
    parser.add_argument(
        "--permanent", type=int, default=3, help="retry-policy: known permanent failures, after the transient ones"
    )
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
    try:
        if args.path == "retry-policy":
            result = _retry_policy_path(stack, client, args.failures, args.permanent, args.timeout)
        else:
            result = _clear_path(stack, client, args.failures, args.timeout)
    finally:
        client.close()
        if started_here:
            stack.down()
    result["machine"] = f"{os.cpu_count()} cores, {platform.machine()}"
    print(json.dumps(result))
    return 0


def _clear_path(stack: Stack, client: DevRestClient, failures: int, timeout: float) -> dict[str, Any]:
    seconds: list[float] = []
    stages: list[dict[str, float]] = []
    if not _has_verified_precedent(stack):
        print("bench: no verified fix yet: one failure goes through approval first", flush=True)
        _seed_by_approval(stack, client, timeout)
    for n in range(1, failures + 1):
        run_id = client.trigger(DAG_ID)
        incident_id, failed_at = _wait_incident(stack, run_id, timeout)
        route, status = _wait_closed(stack, incident_id, timeout)
        if route != "auto" or status != "resolved":
            raise RuntimeError(f"incident {incident_id} went {route} and ended {status}: not the automatic path")
        rerun = next(t for t in client.task_instances(DAG_ID, run_id) if t["task_id"] == TASK_ID)
        t1 = parse_time(rerun["start_date"])
        seconds.append((t1 - failed_at).total_seconds())
        stages.append(_stages(stack, incident_id, failed_at))
        print(
            f"bench: failure {n:>3}/{failures}: failure -> re-run running {seconds[-1]:6.2f} s"
            f" (decided {stages[-1]['decided_s']:.2f} s, applied {stages[-1]['applied_s']:.2f} s)",
            flush=True,
        )
    return {
        "benchmark": "time-to-fix",
        "path": "automatic (retry after a verified resolution)",
        "failures": len(seconds),
        **_spread(seconds),
        "decided_p50_s": round(percentile([s["decided_s"] for s in stages], 0.5), 3),
        "applied_p50_s": round(percentile([s["applied_s"] for s in stages], 0.5), 3),
    }


def _spread(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_s": round(percentile(seconds, 0.5), 3),
        "p95_s": round(percentile(seconds, 0.95), 3),
        "min_s": round(min(seconds), 3),
        "max_s": round(max(seconds), 3),
        "mean_s": round(statistics.fmean(seconds), 3),
    }


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


def _wait_incident(
    stack: Stack, run_id: str, timeout: float, dag_id: str = DAG_ID, task_id: str | None = None
) -> tuple[int, datetime]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _query(
            stack,
            "SELECT incident_id, failed_at FROM medic.failure_events WHERE dag_id = %s AND run_id = %s"
            " AND (%s::text IS NULL OR task_id = %s) AND NOT will_retry AND incident_id IS NOT NULL",
            (dag_id, run_id, task_id, task_id),
        )
        if rows:
            return rows[0]
        time.sleep(0.2)
    raise TimeoutError(f"the failure of {dag_id}/{run_id} {task_id or ''} was not filed within {timeout:.0f}s")


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


def _seed_by_approval(stack: Stack, client: DevRestClient, timeout: float) -> None:
    run_id = client.trigger(DAG_ID)
    incident_id, _ = _wait_incident(stack, run_id, timeout)
    status = _approve(stack, client, incident_id, timeout)
    if status != "resolved":
        raise RuntimeError(f"the approved fix of incident {incident_id} ended {status}")
    print(f"bench: incident {incident_id} approved, re-run and verified; it is learned on the next diagnosis")


def _approve(stack: Stack, client: DevRestClient, incident_id: int, timeout: float) -> str:
    """Answer the incident's approval request with Apply, as the admin in the UI; its verified status."""
    _answer_apply(stack, client, [incident_id], timeout)
    return _wait_closed(stack, incident_id, timeout)[1]


def _answer_apply(
    stack: Stack,
    client: DevRestClient,
    incident_ids: list[int],
    timeout: float,
    settle: float = 3,
    changes: dict[int, dict[str, Any]] | None = None,
) -> None:
    """Apply to each incident's approval request once all of them wait (an unanswered one expires);
    with ``changes`` for an incident, "Apply with changes" and those values."""
    waiting: dict[int, tuple[str, int]] = {}
    deadline = time.monotonic() + timeout
    while len(waiting) < len(incident_ids) and time.monotonic() < deadline:
        for incident_id in incident_ids:
            if incident_id in waiting:
                continue
            diagnose_run = _query(
                stack, "SELECT processed_by FROM medic.failure_events WHERE incident_id = %s LIMIT 1", (incident_id,)
            )[0][0]
            index = client.awaiting_approval(diagnose_run, incident_id)
            if index is not None:
                waiting[incident_id] = (diagnose_run, index)
        time.sleep(0.5)
    missing = sorted(set(incident_ids) - set(waiting))
    if missing:
        raise TimeoutError(f"no approval request for incident(s) {missing}")
    # Answering before the scheduler has seen the parked try end races it in Airflow 3.3 (it then
    # fails the resumed try): ~1 s is enough on an idle machine, several on a busy one.
    time.sleep(settle)
    for incident_id, (diagnose_run, index) in waiting.items():
        edited = (changes or {}).get(incident_id)
        option = "Apply with changes" if edited is not None else "Apply"
        response = client.respond(APPROVAL_DAG, diagnose_run, APPROVAL_TASK, index, option, edited)
        if response.status_code != 200:
            raise RuntimeError(f"approving incident {incident_id} failed: {response.status_code} {response.text[:300]}")


# ---- --path retry-policy ---------------------------------------------------------------------------
RP_DAG, RP_SEED_DAG = "demo_retry_policy", "demo_retry_policy_seed"
TRANSIENT, PERMANENT = "fetch_inventory", "transform"
#: what each seeded failure's fix must have been verified as for the policy to decide it
SEEDED_OUTCOME = {TRANSIENT: "resolved", PERMANENT: "failed"}
#: rows the transform handles (each has customer_id): a run that only the API call fails
GOOD_ROWS = [{"order_id": 1, "customer_id": 7, "amount": 3.0}]
RP_RETRY_DELAY_S = 300  # demo_retry_policy's retry_delay: what the default path waits per retry


def _verified_seed(stack: Stack) -> dict[str, str]:
    """The verified outcome of each seed task's applied fix, newest first (empty: not seeded)."""
    rows = _query(
        stack,
        "SELECT DISTINCT ON (i.task_id) i.task_id, r.verified_outcome FROM medic.incidents i"
        " JOIN medic.remediations r ON r.incident_id = i.id"
        " WHERE i.dag_id = %s AND r.decision = 'apply' AND r.verified_outcome IS NOT NULL"
        " ORDER BY i.task_id, r.verified_at DESC",
        (RP_SEED_DAG,),
    )
    return {task_id: outcome for task_id, outcome in rows}


def seed_retry_policy_memory(stack: Stack, client: DevRestClient, timeout: float) -> dict[str, str]:
    """Verified memory of both demo failures, earned as medic earns it: a seed run fails both tasks
    (no retries), a person approves both fixes, medic re-runs them, and the outcomes are verified
    (the API call's re-run succeeds, the transform's fails). Idempotent."""
    if _verified_seed(stack) == SEEDED_OUTCOME:
        return SEEDED_OUTCOME
    print(f"bench: no verified memory of {RP_SEED_DAG}'s failures yet: one run goes through approval", flush=True)
    run_id = client.trigger(RP_SEED_DAG)
    filed = {
        task_id: _wait_incident(stack, run_id, timeout, dag_id=RP_SEED_DAG, task_id=task_id)[0]
        for task_id in (TRANSIENT, PERMANENT)
    }
    # both at once (an unanswered approval expires); the person re-runs the API call now, whether
    # medic proposed a plain retry or a backoff (the upstream is back): its learned delay is 0
    now = {filed[TRANSIENT]: {"delay_seconds": 0, "include_downstream": True, "rerun_on_latest_version": False}}
    _answer_apply(stack, client, list(filed.values()), timeout, settle=8, changes=now)
    outcomes = {task_id: _wait_closed(stack, incident_id, timeout)[1] for task_id, incident_id in filed.items()}
    for task_id, incident_id in filed.items():
        print(f"bench: incident {incident_id} ({task_id}) approved, re-run and verified {outcomes[task_id]}")
    if outcomes != SEEDED_OUTCOME:
        raise RuntimeError(f"the seeded fixes ended {outcomes}, expected {SEEDED_OUTCOME}")
    return outcomes


def _decision_of(stack: Stack, dag_id: str, run_id: str, task_id: str, timeout: float) -> dict[str, Any]:
    """The retry policy's decision on try 1, from the failure record the listener captured."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _query(
            stack,
            "SELECT payload->'retry_decision' FROM medic.failure_events WHERE dag_id = %s AND run_id = %s"
            " AND task_id = %s AND try_number = 1",
            (dag_id, run_id, task_id),
        )
        if rows:
            if not rows[0][0]:
                raise RuntimeError(f"{dag_id}/{run_id}/{task_id} try 1 was captured without a retry decision")
            return dict(rows[0][0])
        time.sleep(0.2)
    raise TimeoutError(f"try 1 of {dag_id}/{run_id}/{task_id} was not captured within {timeout:.0f}s")


def _wait_task(client: DevRestClient, run_id: str, task_id: str, timeout: float) -> dict[str, Any]:
    """The task instance once it finished (success or failed) in this run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ti = next(t for t in client.task_instances(RP_DAG, run_id) if t["task_id"] == task_id)
        if ti["state"] in ("success", "failed"):
            return ti
        time.sleep(0.2)
    raise TimeoutError(f"{RP_DAG}/{run_id}/{task_id} did not finish within {timeout:.0f}s")


def _retry_policy_path(
    stack: Stack, client: DevRestClient, failures: int, permanent: int, timeout: float
) -> dict[str, Any]:
    seed_retry_policy_memory(stack, client, max(timeout, 240))
    seconds: list[float] = []
    lookups_ms: list[float] = []
    scheduling: list[float] = []
    for n in range(1, failures + 1):
        run_id = client.trigger(RP_DAG, conf={"rows": GOOD_ROWS})  # only the API call fails (its first try)
        fetched = _wait_task(client, run_id, TRANSIENT, timeout)
        decided = _decision_of(stack, RP_DAG, run_id, TRANSIENT, timeout)
        if decided["action"] != "retry" or fetched["state"] != "success" or fetched["try_number"] != 2:
            raise RuntimeError(f"{TRANSIENT} was not retried by medic: {decided} {fetched['state']}")
        t0, t1 = datetime.fromisoformat(decided["evaluated_at"]), parse_time(fetched["start_date"])
        seconds.append((t1 - t0).total_seconds())
        lookups_ms.append(float(decided["elapsed_ms"]))
        ended = client.get(f"/api/v2/dags/{RP_DAG}/dagRuns/{run_id}/taskInstances/{TRANSIENT}/tries/1")["end_date"]
        scheduling.append((t1 - parse_time(ended)).total_seconds())
        print(
            f"bench: failure {n:>3}/{failures}: transient failure -> retry running {seconds[-1]:6.2f} s"
            f" (policy {lookups_ms[-1]:.0f} ms, try ended -> retry running {scheduling[-1]:.2f} s)",
            flush=True,
        )
    first_try = saved = 0
    for n in range(1, permanent + 1):
        run_id = client.trigger(RP_DAG, conf={"fail_tries": 0})  # only the transform fails
        transformed = _wait_task(client, run_id, PERMANENT, timeout)
        decided = _decision_of(stack, RP_DAG, run_id, PERMANENT, timeout)
        tries, retries = int(transformed["try_number"]), int(transformed["max_tries"])
        failed = transformed["state"] == "failed"
        first_try += failed and tries == 1
        saved += retries - (tries - 1) if failed else 0
        print(
            f"bench: permanent {n:>3}/{permanent}: {transformed['state']} at try {tries} of {retries + 1}"
            f" ({decided['action']}: {decided['reason']})",
            flush=True,
        )
    return {
        "benchmark": "time-to-fix",
        "path": "retry-policy (medic's verified memory decides Airflow's own retries)",
        "failures": len(seconds),
        **_spread(seconds),
        "policy_lookup_p50_ms": round(percentile(lookups_ms, 0.5), 1),
        "policy_lookup_max_ms": round(max(lookups_ms), 1),
        "try_ended_to_retry_running_p50_s": round(percentile(scheduling, 0.5), 3),
        "task_retry_delay_s": RP_RETRY_DELAY_S,
        "permanent_failures": permanent,
        "permanent_failed_at_first_try": first_try,
        "retries_saved": saved,
        "retry_wait_saved_s": saved * RP_RETRY_DELAY_S,
    }
