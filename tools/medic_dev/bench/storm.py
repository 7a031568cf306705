"""medic bench storm: an outage fails hundreds of tasks at once; what does medic make of it?

Usage: medic [--home DIR] [--port P] bench storm [--failures 500] [--dags 10] [--writers 8] [--waves 1]

Starts the embedded stack if it is not running (and stops it again afterwards). The storm:
``--failures`` failed task instances spread over ``--dags`` DAGs (``storm_00`` ...), one
mapped task each, three distinct causes (``medic_dev.examples.burst_failure``: a read timeout, a
refused broker connection, a missing column), all raised as real exceptions and reported
through the listener's own code (``medic_dev.examples.report_storm_failure`` hands them to
``medic.capture.listener.capture_failure``, the function the plugin's listener calls in a failing task's
process) from ``--writers`` processes at once, as that many workers would. No Airflow task
runs for them: on a 2-core machine Airflow starts a task in about a second of CPU, so 500 real
failures cannot land within a minute here. Everything from the outbox on (trigger, asset
events, medic_diagnose runs, grouping, generation, decisions) is the real stack.
``tests/e2e/test_faults.py`` storms real task instances through the real listener, smaller.

``--waves N`` splits the DAGs into N groups, reported one after another, each once the last
group's failures were all claimed: a small storm then still has several diagnose runs with
new incidents to generate for at once, which is what the generation pool must serialise (a
storm of a few dozen failures is otherwise claimed whole by the first run).
``tests/e2e/test_generation.py`` runs a smoke size that way; docs/DESIGN.md's figure is the 500.

Prints progress, then a JSON object as the last line:
``failures`` sent; ``run_id`` the failures carry (in ``medic.failure_events``);
``recorded`` distinct outbox rows; ``incidents`` they were filed into;
``expected_incidents`` (DAGs x causes); ``generations`` model diagnoses of those incidents;
``approvals`` approval requests (Airflow's HITL rows for those incidents); ``lost`` failures
not filed into exactly one incident;
``duplicated`` filings beyond one per failure plus generations beyond one per incident;
``seconds`` from the first failure to the last incident decided; ``report_seconds`` spent
reporting (over all waves, without the waits between them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from medic.remediate.remediation import approval_subject_suffix

if TYPE_CHECKING:
    from medic_dev.stack import Stack

TASK_ID = "load_partition"
CAUSES = 3  # burst_failure's distinct faults


def storm_dag(index: int) -> str:
    return f"storm_{index:02d}"


def main(argv: list[str], stack: Stack) -> int:
    parser = argparse.ArgumentParser(prog="medic bench storm")
    parser.add_argument("--failures", type=int, default=500)
    parser.add_argument("--dags", type=int, default=10)
    parser.add_argument("--writers", type=int, default=8, help="processes reporting failures at once")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for every incident's decision")
    parser.add_argument(
        "--waves", type=int, default=1, help="groups of DAGs reported in turn, each once the last one was claimed"
    )
    args = parser.parse_args(argv)
    if args.failures < 1 or args.dags < 1 or args.writers < 1:
        parser.error("--failures, --dags and --writers must be at least 1")
    if not 1 <= args.waves <= min(args.dags, args.failures):
        parser.error("--waves must be at least 1 and at most --dags (and --failures)")

    started_here = not all(stack.running().values())
    if started_here:
        print(f"bench: starting the embedded stack in {stack.home} ...", flush=True)
        stack.up()
    run_id = f"storm__{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}"
    dags = [storm_dag(i) for i in range(args.dags)]
    jobs = [(dags[i % args.dags], i // args.dags, f"storm-worker-{i % args.writers}") for i in range(args.failures)]
    try:
        os.environ.update(stack.env())  # the writers (forked) report to the stack's medic_db
        from medic_dev.examples import report_storm_failure, warm_capture  # noqa: PLC0415 - after the env

        with ProcessPoolExecutor(args.writers, initializer=warm_capture) as pool:
            # every writer started and warm (as a task process is when its listener runs)
            list(pool.map(time.sleep, [0.5] * args.writers * 2, chunksize=1))
            outcomes: list[str] = []
            send_seconds = 0.0
            for wave in range(args.waves):
                if wave:
                    _wait_claimed(stack, run_id, args.timeout)
                batch = [job for job in jobs if dags.index(job[0]) % args.waves == wave]
                sent = time.monotonic()
                outcomes += pool.map(
                    report_storm_failure,
                    [dag for dag, _, _ in batch],
                    [run_id] * len(batch),
                    [TASK_ID] * len(batch),
                    [index for _, index, _ in batch],
                    [host for _, _, host in batch],
                    chunksize=max(1, len(batch) // (args.writers * 4)),
                )
                send_seconds += time.monotonic() - sent
        captured = sum(1 for o in outcomes if o.startswith("captured"))
        print(
            f"bench: {len(jobs)} failures over {args.dags} DAGs reported in {send_seconds:.1f} s"
            f"{f' in {args.waves} waves' if args.waves > 1 else ''} ({captured} captured by the listener's code)",
            flush=True,
        )
        for outcome in sorted({o for o in outcomes if not o.startswith("captured")}):
            print(f"bench: capture said: {outcome}", flush=True)
        figures = _wait_decided(stack, run_id, args.failures, args.timeout)
    finally:
        if started_here:
            stack.down()
    result = {
        "benchmark": "storm",
        "failures": args.failures,
        "dags": args.dags,
        "waves": args.waves,
        "run_id": run_id,
        **figures,
        "expected_incidents": min(args.failures, args.dags * CAUSES),
        "report_seconds": round(send_seconds, 2),
        "writers": args.writers,
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
    }
    print(json.dumps(result))
    return 0


_FIGURES = """
WITH ev AS (
    SELECT * FROM medic.failure_events WHERE run_id = %(run)s
), inc AS (
    SELECT i.* FROM medic.incidents i WHERE i.id IN (SELECT incident_id FROM ev WHERE incident_id IS NOT NULL)
)
SELECT (SELECT count(*) FROM ev),
       (SELECT count(*) FROM ev WHERE status = 'processed' AND incident_id IS NOT NULL),
       (SELECT count(*) FROM inc),
       (SELECT count(*) FROM inc WHERE route IS NOT NULL),
       (SELECT count(*) FROM medic.diagnoses d WHERE d.incident_id IN (SELECT id FROM inc) AND d.source LIKE 'llm:%%'),
       (SELECT count(DISTINCT d.incident_id) FROM medic.diagnoses d
         WHERE d.incident_id IN (SELECT id FROM inc) AND d.source LIKE 'llm:%%'),
       (SELECT coalesce(sum(event_count), 0) FROM inc),
       (SELECT count(*) FROM inc WHERE route = 'approval'),
       (SELECT count(*) FROM inc WHERE approval_requested_at IS NOT NULL),
       (SELECT min(failed_at) FROM ev),
       (SELECT max(decided_at) FROM inc),
       (SELECT count(*) FROM ev WHERE status = 'invalid')
"""


def _figures(stack: Stack, run_id: str) -> dict[str, Any]:
    with stack.connect_postgres("medic", autocommit=True) as conn:
        row = conn.execute(_FIGURES, {"run": run_id}).fetchone()
        assert row is not None  # aggregates: always one row
        incident_ids = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT incident_id FROM medic.failure_events WHERE run_id = %s AND incident_id IS NOT NULL",
                (run_id,),
            )
        ]
    # the approval requests as Airflow holds them (HITL rows), one subject per incident
    with stack.connect_postgres("airflow", autocommit=True) as conn:
        (requests,) = conn.execute(
            "SELECT count(*) FROM hitl_detail WHERE subject LIKE ANY(%s)",
            ([f"%{approval_subject_suffix(i)}" for i in incident_ids],),
        ).fetchone() or (0,)
    (recorded, filed, incidents, decided, generations, generated_incidents, counted, routed_approval) = row[:8]
    _recorded_requests, first_failure, last_decided, invalid = row[8:]
    return {
        "recorded": recorded,
        "filed": filed,
        "incidents": incidents,
        "decided": decided,
        "generations": generations,
        "generated_incidents": generated_incidents,
        "counted": counted,
        "routed_approval": routed_approval,
        "approvals": requests,
        "invalid": invalid,
        "first_failure": first_failure,
        "last_decided": last_decided,
    }


def _wait_claimed(stack: Stack, run_id: str, timeout: float) -> None:
    """Until no failure reported so far waits unclaimed: a diagnose run has taken them all."""
    deadline = time.monotonic() + timeout
    while True:
        with stack.connect_postgres("medic", autocommit=True) as conn:
            (waiting,) = conn.execute(
                "SELECT count(*) FROM medic.failure_events WHERE run_id = %s AND status = 'pending'"
                " AND claimed_at IS NULL",
                (run_id,),
            ).fetchone() or (0,)
        if not waiting:
            return
        if time.monotonic() > deadline:
            print(
                f"bench: {waiting} failures still unclaimed after {timeout:.0f}s; the next wave goes anyway", flush=True
            )
            return
        time.sleep(0.5)


def _wait_decided(stack: Stack, run_id: str, failures: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        f = _figures(stack, run_id)
        if f != last:
            print(
                f"bench: recorded {f['recorded']}/{failures}, filed {f['filed']}, incidents {f['incidents']},"
                f" decided {f['decided']}, generations {f['generations']}, approval requests {f['approvals']}",
                flush=True,
            )
            last = f
        filed = f["recorded"] >= failures and f["filed"] + f["invalid"] >= f["recorded"]
        decided = f["incidents"] and f["decided"] == f["incidents"]
        if filed and decided and f["approvals"] >= f["routed_approval"]:
            break
        if time.monotonic() > deadline:
            print(f"bench: gave up waiting after {timeout:.0f}s", flush=True)
            break
        time.sleep(2)
    seconds = None
    if f["first_failure"] and f["last_decided"]:
        seconds = round((f["last_decided"] - f["first_failure"]).total_seconds(), 2)
    # lost: failures that did not end up filed into an incident (counted once)
    lost = failures - f["filed"]
    # duplicated: filings counted beyond one per failure, generations beyond one per incident
    duplicated = max(0, f["counted"] - f["filed"]) + (f["generations"] - f["generated_incidents"])
    return {
        "recorded": f["recorded"],
        "incidents": f["incidents"],
        "decided": f["decided"],
        "generations": f["generations"],
        "approvals": f["approvals"],
        "routed_approval": f["routed_approval"],
        "lost": lost,
        "duplicated": duplicated,
        "seconds": seconds,
    }
