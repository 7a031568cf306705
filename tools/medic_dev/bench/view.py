"""medic bench view: how fast the incidents view's queries answer on a large history.

Usage: medic bench view [--incidents 100000] [--dags 50] [--repeats 20]

Seeds a scratch database ``medic_bench_view`` on the embedded PostgreSQL (started if needed),
migrated like ``medic_db``, with one failure, one diagnosis and (for decided incidents) one
remediation per incident, spread over 90 days, ``--dags`` DAGs and every status and class.
Then it times what the page asks for (``medic.view.report``, as the api-server runs it,
with the caller's readable DAGs): the first page, filtered pages, a deep page, one incident,
the headline figures over 7, 30 and 90 days, and the filter choices. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from medic.contract import ERROR_CLASSES
from medic.view import report
from medic_dev.stats import percentile

if TYPE_CHECKING:
    from collections.abc import Callable

    from medic_dev.stack import Stack

DATABASE = "medic_bench_view"
STATUSES = ["resolved"] * 3 + ["failed", "rejected", "escalated", "expired", "awaiting_approval", "superseded", "open"]

SEED = """
INSERT INTO medic.failure_events (dag_id, run_id, task_id, try_number, state, source, payload, status,
                                  failed_at, processed_by)
SELECT 'dag_' || (g %% %(dags)s), 'scheduled__' || g, 'task_' || (g %% 7), 1, 'failed', 'task', '{}'::jsonb,
       'processed', %(now)s - ((g * 7919) %% (90 * 86400)) * interval '1 second', 'asset_triggered__' || g
  FROM generate_series(1, %(n)s) g;

INSERT INTO medic.incidents (fingerprint, dag_id, task_id, status, exception_type, signature, error_message,
                             first_event_id, event_count, first_failed_at, last_failed_at, route, route_reason,
                             decided_at, time_to_fix_seconds)
SELECT 'fp' || e.id, e.dag_id, e.task_id, (%(statuses)s::text[])[1 + e.id %% 10], 'OperationalError',
       'sig ' || (e.id %% 500),
       'connection refused #' || e.id, e.id, 1, e.failed_at, e.failed_at,
       CASE WHEN e.id %% 10 = 9 THEN NULL WHEN e.id %% 3 = 0 THEN 'auto' ELSE 'approval' END,
       'bench', e.failed_at + interval '3 seconds',
       CASE WHEN (%(statuses)s::text[])[1 + e.id %% 10] = 'resolved' THEN 5 + (e.id %% 600) END
  FROM medic.failure_events e;

UPDATE medic.failure_events e SET incident_id = i.id FROM medic.incidents i WHERE i.first_event_id = e.id;

INSERT INTO medic.diagnoses (incident_id, source, error_class, action, confidence, automatic, decision_reason,
                             diagnosis, neighbours)
SELECT i.id, 'retrieval', (%(classes)s::text[])[1 + i.id %% 13], 'retry', 0.5 + (i.id %% 50) / 100.0,
       i.route = 'auto', 'bench',
       jsonb_build_object('error_class', (%(classes)s::text[])[1 + i.id %% 13], 'root_cause', 'bench',
                          'evidence', '[]'::jsonb),
       '[]'::jsonb
  FROM medic.incidents i WHERE i.status <> 'open';

UPDATE medic.incidents i SET diagnosis_id = d.id FROM medic.diagnoses d WHERE d.incident_id = i.id;

INSERT INTO medic.remediations (incident_id, action, decided_by, approver, decision, status, applied_at,
                                verified_outcome, verified_at)
SELECT i.id, 'retry', CASE WHEN i.route = 'auto' THEN 'auto' ELSE 'user' END,
       CASE WHEN i.route = 'approval' THEN 'alice' END,
       CASE i.status WHEN 'rejected' THEN 'reject' WHEN 'expired' THEN 'expire' ELSE 'apply' END,
       CASE WHEN i.status IN ('rejected', 'expired') THEN 'recorded' ELSE 'applied' END,
       i.decided_at, CASE i.status WHEN 'resolved' THEN 'resolved' WHEN 'failed' THEN 'failed' END,
       CASE WHEN i.status IN ('resolved', 'failed') THEN i.decided_at + interval '10 seconds' END
  FROM medic.incidents i WHERE i.status IN ('resolved', 'failed', 'rejected', 'expired');
"""


def timed(repeats: int, work: Callable[[], object]) -> dict[str, float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return {"p50_ms": round(percentile(seconds, 0.5) * 1000, 2), "p95_ms": round(percentile(seconds, 0.95) * 1000, 2)}


def main(argv: list[str], stack: Stack) -> int:
    parser = argparse.ArgumentParser(prog="medic bench view")
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--dags", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    stack.start_postgres()
    with stack.connect_postgres("postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    stack.migrate_medic(DATABASE)
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    params = {"n": args.incidents, "dags": args.dags, "now": now, "statuses": STATUSES, "classes": list(ERROR_CLASSES)}
    with stack.connect_postgres(DATABASE, autocommit=True) as conn:
        for statement in SEED.split(";\n\n"):  # one statement per execute: parameters are bound server-side
            conn.execute(statement, params)
        conn.execute("ANALYZE")
    seeded = time.perf_counter() - started
    print(f"seeded {args.incidents} incidents over {args.dags} DAGs in {seeded:.1f} s")

    readable = {f"dag_{i}" for i in range(args.dags)} | {f"other_dag_{i}" for i in range(200)}
    until = now + timedelta(minutes=1)

    def window(days: int) -> Callable[[], report.Summary]:
        return lambda: report.summary(conn, since=until - timedelta(days=days), until=until, readable_dags=readable)

    figures: dict[str, Any] = {}
    with stack.connect_postgres(DATABASE, autocommit=True) as conn:
        middle = report.list_incidents(conn, report.Filters(), limit=1, offset=args.incidents // 2).items[0].id
        cases = {
            "first_page": lambda: report.list_incidents(conn, report.Filters(), readable_dags=readable),
            "status_filter": lambda: report.list_incidents(
                conn, report.Filters(status="awaiting_approval"), readable_dags=readable
            ),
            "class_filter": lambda: report.list_incidents(
                conn, report.Filters(error_class="code_bug"), readable_dags=readable
            ),
            "dag_filter": lambda: report.list_incidents(conn, report.Filters(dag_id="dag_7"), readable_dags=readable),
            "deep_page": lambda: report.list_incidents(
                conn, report.Filters(), offset=args.incidents // 2, readable_dags=readable
            ),
            "detail": lambda: report.incident_detail(conn, middle, readable_dags=readable),
            "summary_7d": window(7),
            "summary_30d": window(30),
            "summary_90d": window(90),
            "filters": lambda: report.filter_choices(conn, readable),
        }
        for name, work in cases.items():
            work()  # warm the cache: the figures are for a server that has been answering
            figures[name] = timed(args.repeats, work)
            print(f"  {name:<14} p50 {figures[name]['p50_ms']:8.2f} ms   p95 {figures[name]['p95_ms']:8.2f} ms")
    with stack.connect_postgres("postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    print(json.dumps({"incidents": args.incidents, "dags": args.dags, "seed_s": round(seeded, 1), **figures}))
    return 0
