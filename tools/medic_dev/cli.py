"""The development tools' ``medic`` subcommands: the embedded stack, the demo, eval,
lineage files and benchmarks. Registered through the ``medic.commands`` entry point; the
runtime package never imports this."""

from __future__ import annotations

import importlib
import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medic import config, db
from medic.cli import fetch_event_counts, fetch_incidents, medic_db_configured, print_incidents, say
from medic.diagnose.embedding import get_embedder
from medic.diagnose.knowledge import load_runbooks
from medic.lineage import events as lineage
from medic.llm.base import BACKENDS, GenerationSettings
from medic.llm.client import run_isolated
from medic_dev import lineage_files
from medic_dev.evaluate import evaluate, load_cases, plot
from medic_dev.stack import ADMIN_USER, LINEAGE_NAMESPACE, Stack, project_root

if TYPE_CHECKING:
    import argparse
    from types import FrameType

DEMO_DAGS = ("demo_flaky_api", "demo_missing_input", "demo_buggy_transform", "demo_warehouse_load")


def default_home() -> Path:
    env = os.environ.get("MEDIC_STACK_HOME")
    return Path(env).resolve() if env else project_root() / ".medic"


def make_stack(args: argparse.Namespace) -> Stack:
    return Stack(home=Path(args.home).resolve() if args.home else default_home(), api_port=args.port)


def use_stack_env(args: argparse.Namespace) -> None:
    """Point this process at the embedded stack's medic database (``medic.environment`` hook)."""
    stack = make_stack(args)
    if not stack.secrets_file.exists():
        raise SystemExit("medic: no medic_db connection configured and no embedded stack; run `medic stack up`")
    os.environ.update(stack.env())


# ---- stack ---------------------------------------------------------------------------------------
def cmd_stack(args: argparse.Namespace) -> int:
    stack = make_stack(args)
    if args.action == "up":
        say(f"medic: starting the embedded stack in {stack.home} ...")
        stack.up()
        _print_access(stack)
    elif args.action == "down":
        stack.down()
        say("medic: stack stopped")
    elif args.action == "status":
        say(json.dumps(stack.running(), indent=2))
    elif args.action == "env":
        stack.write_env_file()
        say(stack.env_file.read_text().rstrip())
    return 0


def _print_access(stack: Stack) -> None:
    say(f"medic: Airflow UI  {stack.api_url}   (user {ADMIN_USER}, password {stack.admin_password()})")
    say(f"medic: logs        {stack.log_dir}")
    say(f"medic: shell env   source {stack.env_file}")


# ---- demo ----------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    stack = make_stack(args)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Explicit handlers: a demo started from a script may inherit SIGINT as ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        say(f"medic demo: starting PostgreSQL (pgvector) and Airflow 3 in {stack.home} (about a minute) ...")
        stack.up()
        os.environ.update(stack.env()) if not medic_db_configured() else None
        _print_access(stack)
        client = stack.client()
        runs = {dag_id: client.trigger(dag_id) for dag_id in DEMO_DAGS}
        say(f"medic demo: triggered {len(runs)} example pipelines that fail: {', '.join(runs)}")
        for dag_id, run_id in runs.items():
            state = client.wait_for_run(dag_id, run_id, timeout=240)
            say(f"  {dag_id:<24} {state}")
        _wait_until_none(
            "SELECT count(*) FROM medic.failure_events WHERE status = 'pending'",
            120,
            "some failure events are still pending",
        )
        _wait_until_none(
            "SELECT count(*) FROM medic.incidents WHERE status = 'open'", 180, "some incidents are not diagnosed yet"
        )
        _wait_until_none(
            "SELECT count(*) FROM medic.incidents WHERE status = 'diagnosed' AND route IS NULL",
            180,
            "some incidents are not decided yet",
        )
        say("\nmedic demo: what medic captured (newest first):")
        say(f"  failure events by status: {fetch_event_counts()}  (retrying = Airflow retried it itself)")
        print_incidents(fetch_incidents(20))
        say("\nWhere to look in the Airflow UI:")
        say(f"  {stack.api_url}/plugin/medic-incidents     Incidents: medic's view (figures, diagnoses, fixes)")
        say(f"  {stack.api_url}/dags/medic_diagnose            the diagnosis DAG, one run per wake-up")
        say(f"  {stack.api_url}/assets                         asset medic_task_failures and its events")
        say("  Browse -> Required Actions                  the approval requests (answer as admin)")
        for dag_id in runs:
            say(f"  {stack.api_url}/dags/{dag_id}")
        say("Also: `medic incidents` prints this list again.")
        _print_lineage(stack)
        if args.exit:
            return 0
        say("\nmedic demo: the stack keeps running; press Ctrl-C to stop it.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("\nmedic demo: stopping ...")
        return 0
    finally:
        stack.down()
        say("medic demo: stopped. Run `make demo` again to start over where you left off.")


def _print_lineage(stack: Stack) -> None:
    """Where the lineage went, and what to open in Marquez."""
    transport = stack.lineage_transport()["transport"]
    say("\nLineage (OpenLineage, through Airflow's provider; every event scrubbed of secrets):")
    if transport["type"] == "http":
        say(f"  sent to {transport['url']}; open Marquez's web UI (http://localhost:3000 with the compose overlay)")
    else:
        summary = lineage_files.summarise(lineage_files.read_events(str(stack.lineage_file)))
        per_job = summary["per_job"]
        medic_jobs = ", ".join(f"{job} {sum(per_job[job].values())}" for job in lineage.JOB_TYPES if job in per_job)
        say(f"  {summary['events']} events in {stack.lineage_file}")
        say(f"  medic's: {medic_jobs or 'none yet'}; {summary['medic_runs_with_parent_in_file']} of")
        say(f"  {summary['medic_runs']} medic runs link (ParentRunFacet) to a failed task run in the same file")
        say("  `medic lineage` summarises it again; `medic lineage --validate ../shared/openlineage-spec` checks it.")
        say("  For Marquez: docker compose -f docker-compose.marquez.yaml up -d, then")
        say("  MEDIC_OPENLINEAGE_URL=http://localhost:5000 make demo, and open http://localhost:3000")
    say(f"  In Marquez: namespace {LINEAGE_NAMESPACE}, jobs medic.diagnose, medic.approve and medic.remediate;")
    say("  a run's facets medic_failure, medic_diagnosis, medic_decision, medic_approval, medic_remediation,")
    say("  and its parent: the failed task's run (job <dag_id>.<task_id>).")


def cmd_lineage(args: argparse.Namespace) -> int:
    """Summarise (and optionally validate) the lineage a file transport wrote."""
    path = args.file or str(make_stack(args).lineage_file)
    events = lineage_files.read_events(path)
    summary: dict[str, Any] = {"file": path, **lineage_files.summarise(events)}
    if args.validate:
        validator = lineage_files.Validator(args.validate)
        problems = [f"{e['job']['name']} {e['eventType']}: {p}" for e in events for p in validator.problems(e)]
        summary["invalid"] = len(problems)
        summary["problems"] = problems[:50]
    say(json.dumps(summary, indent=2))
    return 1 if summary.get("invalid") else 0


def _count(sql: str) -> int:
    with db.connect(config.get("conn_id"), application_name="medic-cli") as conn:
        (count,) = conn.execute(sql).fetchone() or (0,)  # a count: always one row
        return int(count)


def _wait_until_none(sql: str, timeout: float, complaint: str) -> None:
    """Poll a count until it is zero; say what is still outstanding if it never gets there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _count(sql) == 0:
            return
        time.sleep(1)
    say(f"medic demo: {complaint}; see the medic_diagnose runs")


# ---- eval ----------------------------------------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    cases = load_cases(args.cases)
    runbooks = load_runbooks()
    stack = make_stack(args)
    started_postgres = False
    if medic_db_configured():
        conn = db.connect(config.get("conn_id"), application_name="medic-eval")
    else:  # no medic_db configured: the embedded PostgreSQL, started here if needed
        started_postgres = not stack.postgres_running()
        stack.start_postgres()
        stack.migrate_medic("medic")
        conn = stack.connect_postgres("medic")
    generate, settings = None, None
    if args.backend != "none":
        settings = GenerationSettings(
            backend=args.backend, model=args.model, timeout_seconds=args.timeout, max_new_tokens=args.max_new_tokens
        )

        def generate(request: dict) -> dict:
            return run_isolated(args.llm_python, request, timeout=args.timeout + 60)

    try:
        with conn:
            result = evaluate(
                conn,
                get_embedder(),
                runbooks,
                cases,
                leave_one_out=args.leave_one_out,
                recurrences=args.recurrences,
                generate=generate,
                settings=settings,
            )
    finally:
        if started_postgres:
            stack.stop_postgres()
    if args.plot:
        result["plot"] = str(plot(result, args.plot))
    if not args.details:
        result.pop("cases")
        if "recurrences" in result:
            result["recurrences"].pop("cases")
    say(json.dumps(result, default=str))  # the last line: one JSON object
    return 0


# ---- bench ---------------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    name = args.name.replace("-", "_")
    folder = Path(__file__).parent / "bench"
    if not (folder / f"{name}.py").exists():
        available = sorted(p.stem.replace("_", "-") for p in folder.glob("*.py") if p.stem != "__init__")
        raise SystemExit(f"medic: no benchmark {args.name!r}; available: {', '.join(available)}")
    module = importlib.import_module(f"medic_dev.bench.{name}")
    return int(module.main(args.extra, make_stack(args)) or 0)


def register(parser: argparse.ArgumentParser, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the development subcommands to ``medic`` (the ``medic.commands`` entry point)."""
    parser.add_argument("--home", help="stack home (default: $MEDIC_STACK_HOME or <project>/.medic)")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("MEDIC_API_PORT", "8080")),
        help="api-server port of the embedded stack (default 8080)",
    )
    stack = sub.add_parser("stack", help="start, stop or inspect the embedded stack")
    stack.add_argument("action", choices=["up", "down", "status", "env"])
    stack.set_defaults(handler=cmd_stack)
    demo = sub.add_parser("demo", help="start the stack, run failing example pipelines, show what medic saw")
    demo.add_argument("--exit", action="store_true", help="stop the stack at the end instead of waiting")
    demo.set_defaults(handler=cmd_demo)
    evaluation = sub.add_parser("eval", help="measure the diagnosis on labelled cases (JSON lines)")
    evaluation.add_argument("--cases", required=True, help="JSON lines with id, log and optional labels")
    evaluation.add_argument(
        "--leave-one-out", action="store_true", help="also use the other labelled cases as verified past incidents"
    )
    evaluation.add_argument(
        "--recurrences",
        action="store_true",
        help="also score each case again as a rerun logs it (new timestamps and ids), its original verified",
    )
    evaluation.add_argument("--details", action="store_true", help="include every case's result")
    evaluation.add_argument("--plot", metavar="FILE", help="write a PNG: confusion matrix and reliability diagram")
    evaluation.add_argument(
        "--backend", default="none", choices=BACKENDS, help="also generate with this backend (medic.llm.base)"
    )
    evaluation.add_argument("--model", default="", help="the generation model: a local path")
    evaluation.add_argument(
        "--llm-python", default=".venv-llm/bin/python", help="the generation environment's interpreter"
    )
    evaluation.add_argument("--timeout", type=float, default=900, help="seconds for the whole batch")
    evaluation.add_argument("--max-new-tokens", type=int, default=768)
    evaluation.set_defaults(handler=cmd_eval)
    lineage_cmd = sub.add_parser("lineage", help="summarise the OpenLineage events the stack's file transport wrote")
    lineage_cmd.add_argument("--file", help="a file of events, one per line (default: the stack's)")
    lineage_cmd.add_argument("--validate", metavar="SPEC_DIR", help="check every event against the OpenLineage spec")
    lineage_cmd.set_defaults(handler=cmd_lineage)
    bench_cmd = sub.add_parser("bench", help="run a benchmark from medic_dev.bench (last output line is JSON)")
    bench_cmd.add_argument("name")
    bench_cmd.set_defaults(handler=cmd_bench, passes_extra_arguments=True)
