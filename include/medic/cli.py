"""``medic``: one command for users: migrations and inspection, plus whatever installed
tooling registers (the development tools add the embedded stack, the demo, eval and benchmarks).

Other packages add subcommands through the ``medic.commands`` entry point group: each entry
is a callable taking the top-level parser and its subparsers. A ``medic.environment`` entry
may point this process at a medic database when none is configured (the embedded stack does).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from medic import config, db
from medic.capture.scrub import scrub_stream
from medic.migrate import migrate

Handler = Callable[[argparse.Namespace], int]


def medic_db_configured() -> bool:
    """Whether this process's environment names the ``[medic] conn_id`` connection itself."""
    return f"AIRFLOW_CONN_{config.get('conn_id').upper()}" in os.environ


def use_configured_database(args: argparse.Namespace) -> None:
    """Make sure medic_db is reachable: configured already, or provided by an installed tool."""
    if medic_db_configured():
        return
    for entry in entry_points(group="medic.environment"):
        entry.load()(args)
        return
    raise SystemExit(f"medic: no connection {config.get('conn_id')!r} configured ([medic] conn_id)")


def say(message: str) -> None:
    print(message, flush=True)


def cmd_migrate(args: argparse.Namespace) -> int:
    use_configured_database(args)
    with db.connect(config.get("conn_id"), application_name="medic-migrate") as conn:
        done = migrate(conn)
    say(f"medic: {len(done)} migration(s) applied" + "".join(f"\n  {m.version:04d}_{m.name}" for m in done))
    return 0


# ---- inspection ----------------------------------------------------------------------------------
def fetch_incidents(limit: int = 50) -> list[dict[str, Any]]:
    with db.connect(config.get("conn_id"), application_name="medic-cli") as conn:
        cursor = conn.execute(
            "SELECT i.id, i.status, i.dag_id, i.task_id, i.exception_type, i.event_count, i.signature,"
            " left(i.error_message, 160) AS error, i.first_failed_at, d.error_class, d.action, d.confidence,"
            " d.automatic, i.route, i.route_reason, i.time_to_fix_seconds, r.decision, r.decided_by, r.approver,"
            " r.status AS remediation_status, r.verified_outcome"
            " FROM medic.incidents i LEFT JOIN LATERAL (SELECT * FROM medic.diagnoses"
            " WHERE id = i.diagnosis_id OR (i.diagnosis_id IS NULL AND incident_id = i.id)"
            " ORDER BY created_at DESC LIMIT 1) d ON true"
            " LEFT JOIN medic.remediations r ON r.incident_id = i.id"
            " ORDER BY i.id DESC LIMIT %s",
            (limit,),
        )
        names = [c.name for c in cursor.description or ()]
        return [dict(zip(names, row, strict=False)) for row in cursor.fetchall()]


def fetch_event_counts() -> dict[str, int]:
    with db.connect(config.get("conn_id"), application_name="medic-cli") as conn:
        rows = conn.execute("SELECT status, count(*) FROM medic.failure_events GROUP BY status").fetchall()
        return {str(status): int(count) for status, count in rows}


def print_incidents(rows: list[dict[str, Any]]) -> None:
    if not rows:
        say("  (no incidents yet)")
        return
    for row in rows:
        say(f"  #{row['id']:<4} {row['status']:<17} {row['dag_id']}.{row['task_id']}  x{row['event_count']}")
        first_line = (row["error"] or "").splitlines()[0] if row["error"] else ""
        say(f"        {row['exception_type']}: {first_line}")
        if row.get("error_class"):
            say(f"        diagnosis: {row['error_class']} -> {row['action']} (confidence {row['confidence']:.2f})")
        if row.get("route"):
            say(f"        decision:  {row['route']}: {row['route_reason']}")
        if row.get("decision"):
            who = row["approver"] or row["decided_by"]
            line = f"        fix:       {row['decision']} by {who}, {row['remediation_status']}"
            if row.get("verified_outcome"):
                line += f", verified {row['verified_outcome']}"
            if row.get("time_to_fix_seconds") is not None:
                line += f" ({row['time_to_fix_seconds']:.1f} s from failure to fix)"
            say(line)


def cmd_incidents(args: argparse.Namespace) -> int:
    use_configured_database(args)
    rows = fetch_incidents(args.limit)
    if args.json:
        say(json.dumps(rows, default=str, indent=2))
    else:
        say(f"medic: failure events by status: {fetch_event_counts()}")
        print_incidents(rows)
    return 0


def cmd_scrub(args: argparse.Namespace) -> int:
    scrub_stream(sys.stdin, sys.stdout)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medic", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply medic's schema migrations to medic_db").set_defaults(handler=cmd_migrate)
    incidents = sub.add_parser("incidents", help="list recorded incidents")
    incidents.add_argument("--limit", type=int, default=50)
    incidents.add_argument("--json", action="store_true")
    incidents.set_defaults(handler=cmd_incidents)
    sub.add_parser("scrub", help="print stdin as medic would store it, secrets replaced").set_defaults(
        handler=cmd_scrub
    )
    for entry in entry_points(group="medic.commands"):
        entry.load()(parser, sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passes_extra_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
