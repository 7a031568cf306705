"""Capture: what the listener does when a task instance fails, as plain testable Python.

Contract (it runs inside someone else's failing task): never raise, never take longer than
``[medic] listener_timeout_seconds``, never capture medic's own DAGs, and say in one log line
what happened. The work runs in a short-lived thread so a hung network call cannot hold the
task; if the bound is hit the failure is left to the sweep DAG and the log line says so.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

from medic import config
from medic.records import FailureRecord, FailureSource, build_record, mask_registered_secrets, read_log_tail

log = logging.getLogger("medic.capture")

_DEFAULT_LOG_TEMPLATE = (
    "dag_id={{ ti.dag_id }}/run_id={{ ti.run_id }}/task_id={{ ti.task_id }}/"
    "{% if ti.map_index >= 0 %}map_index={{ ti.map_index }}/{% endif %}"
    "attempt={{ try_number|default(ti.try_number) }}.log"
)


def detect_source(task_instance: Any) -> FailureSource:
    if type(task_instance).__name__ == "RuntimeTaskInstance":
        return "task"
    argv = " ".join(sys.argv[:3])
    if "scheduler" in argv:
        return "scheduler"
    if "api-server" in argv or "api_server" in argv or "uvicorn" in argv:
        return "api-server"
    return "external"


def local_log_path(task_instance: Any) -> str | None:
    """Where the default file task handler writes this try's log, if it is local."""
    try:
        from airflow.configuration import conf

        if conf.get("logging", "log_filename_template", fallback=_DEFAULT_LOG_TEMPLATE) != _DEFAULT_LOG_TEMPLATE:
            return None
        base = conf.get("logging", "base_log_folder")
    except Exception:
        return None
    ti = task_instance
    parts = [f"dag_id={ti.dag_id}", f"run_id={ti.run_id}", f"task_id={ti.task_id}"]
    if int(getattr(ti, "map_index", -1) or -1) >= 0:
        parts.append(f"map_index={ti.map_index}")
    parts.append(f"attempt={ti.try_number}.log")
    return os.path.join(base, *parts)


def capture_failure(task_instance: Any, error: Any, *, source: FailureSource | None = None) -> str:
    """Record one failed try in the outbox, bounded in time. Returns a one-line outcome."""
    started = time.monotonic()
    try:
        dag_id = str(getattr(task_instance, "dag_id", "") or "")
        if dag_id in config.skipped_dag_ids():
            return f"skipped medic's own DAG {dag_id}"
        timeout = config.get_float("listener_timeout_seconds")
    except Exception as exc:  # config or attribute trouble must not escape into the task
        log.warning("medic: capture skipped: %s: %s", type(exc).__name__, exc)
        return "skipped: bad configuration"

    outcome: dict[str, str] = {}

    def work() -> None:
        try:
            outcome["result"] = _capture(
                task_instance, error, source or detect_source(task_instance), deadline=started + timeout
            )
        except Exception as exc:
            outcome["result"] = f"failed: {type(exc).__name__}: {exc}"

    worker = threading.Thread(target=work, name="medic-capture", daemon=True)
    worker.start()
    worker.join(timeout)
    result = outcome.get("result") or f"timed out after {timeout:.1f}s (the sweep will pick it up)"
    elapsed = time.monotonic() - started
    key = _key(task_instance)
    if result.startswith(("failed", "timed out")):
        log.warning("medic: could not capture failure of %s: %s", key, result)
    else:
        log.info("medic: %s %s in %.0f ms", result, key, elapsed * 1000)
    return result


def _key(ti: Any) -> str:
    try:
        return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}[{ti.map_index}]#{ti.try_number}"
    except Exception:
        return "<unknown task instance>"


def _capture(task_instance: Any, error: Any, source: FailureSource, *, deadline: float) -> str:
    import psycopg

    from medic import db, outbox

    log_tail = ""
    if source == "task":
        log_tail = read_log_tail(local_log_path(task_instance), config.get_int("log_tail_bytes"))
    record: FailureRecord = build_record(
        task_instance,
        error,
        source=source,
        log_tail=log_tail,
        traceback_chars=config.get_int("traceback_chars"),
    )
    record = mask_registered_secrets(record)
    remaining = max(0.5, deadline - time.monotonic())
    with db.connect(
        config.get("conn_id"),
        connect_timeout=max(1, int(remaining)),
        statement_timeout_ms=int(remaining * 1000),
        application_name=f"medic-capture-{source}",
    ) as conn:
        diagnose_retries = config.get_bool("diagnose_retries")
        try:
            captured = outbox.record_failure(conn, record, diagnose_retries=diagnose_retries)
            conn.commit()
        except psycopg.DataError as exc:  # something in the evidence the database will not take
            conn.rollback()
            record = record.minimal(f"full record rejected ({type(exc).__name__}); stored without log tail")
            captured = outbox.record_failure(conn, record, diagnose_retries=diagnose_retries)
            conn.commit()
    if captured.event_id is None:
        return "already captured (kept the richer report)"
    verb = "captured" if captured.inserted else "enriched"
    kind = "retrying try" if record.will_retry else "failure"
    return f"{verb} {kind} as event {captured.event_id}:"
