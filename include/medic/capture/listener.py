"""Capture: what the listener does when a task instance fails, as plain testable Python.

Contract (it runs inside someone else's failing task): never raise, never take longer than
``[medic] listener_timeout_seconds``, never capture medic's own DAGs, and say in one log line
what happened. In the task process the work runs in a short-lived thread so a hung network
call cannot hold the task; if the bound is hit the failure is left to the sweep DAG and the log
line says so. In the scheduler and api-server, whose loops call listeners synchronously, the
record is built at once and written by a background thread: their loops never wait on medic.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from typing import TYPE_CHECKING, Protocol, TypedDict

from airflow.configuration import conf

from medic import config
from medic.capture.records import FailureRecord, FailureSource, build_record, mask_registered_secrets, read_log_tail

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

log = logging.getLogger("medic.capture.listener")

#: Long-lived processes whose loops call the listener: capture there never waits on the database.
BACKGROUND_SOURCES = frozenset({"scheduler", "api-server"})

_DEFAULT_LOG_TEMPLATE = (
    "dag_id={{ ti.dag_id }}/run_id={{ ti.run_id }}/task_id={{ ti.task_id }}/"
    "{% if ti.map_index >= 0 %}map_index={{ ti.map_index }}/{% endif %}"
    "attempt={{ try_number|default(ti.try_number) }}.log"
)


class TaskInstance(Protocol):
    """What the listener reads of a task instance: the task process's ``RuntimeTaskInstance``,
    the scheduler's ORM row, or the sweep's stand-in built from the REST API."""

    @property
    def dag_id(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def task_id(self) -> str: ...
    @property
    def map_index(self) -> int | None: ...
    @property
    def try_number(self) -> int: ...


#: What Airflow hands a failure listener: the exception, a message, or nothing.
TaskError = BaseException | str | None


class _FinishedTry(TypedDict):
    """A finished try, as ``verification.record_run_outcome`` takes it."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    started_at: datetime | None


def detect_source(task_instance: TaskInstance) -> FailureSource:
    if type(task_instance).__name__ == "RuntimeTaskInstance":
        return "task"
    argv = " ".join(sys.argv[:3])
    if "scheduler" in argv:
        return "scheduler"
    if "api-server" in argv or "api_server" in argv or "uvicorn" in argv:
        return "api-server"
    return "external"


def local_log_path(task_instance: TaskInstance) -> str | None:
    """Where the default file task handler writes this try's log, if it is local."""
    try:
        if conf.get("logging", "log_filename_template", fallback=_DEFAULT_LOG_TEMPLATE) != _DEFAULT_LOG_TEMPLATE:
            return None
        base = conf.get("logging", "base_log_folder")
    except Exception:
        return None
    ti = task_instance
    parts = [f"dag_id={ti.dag_id}", f"run_id={ti.run_id}", f"task_id={ti.task_id}"]
    if _map_index(ti) >= 0:
        parts.append(f"map_index={ti.map_index}")
    parts.append(f"attempt={ti.try_number}.log")
    return os.path.join(base, *parts)


def capture_failure(task_instance: TaskInstance, error: TaskError, *, source: FailureSource | None = None) -> str:
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

    src = source or detect_source(task_instance)
    if src in BACKGROUND_SOURCES:
        # The scheduler and api-server call listeners inside their own loops: never make them wait
        # on medic's database. Build the record here (ORM objects stay in their thread), write later.
        try:
            record = _build(task_instance, error, src)
        except Exception as exc:
            log.warning("medic: could not capture failure of %s: %s: %s", _key(task_instance), type(exc).__name__, exc)
            return f"failed: {type(exc).__name__}: {exc}"
        return background_writer().submit(record, _key(task_instance))

    result = _bounded(
        lambda: _store(_build(task_instance, error, src), deadline=started + timeout), timeout, "medic-capture"
    )
    result = result or f"timed out after {timeout:.1f}s (the sweep will pick it up)"
    _log_outcome(_key(task_instance), result, time.monotonic() - started)
    return result


def _bounded(work: Callable[[], str], timeout: float, name: str) -> str | None:
    """Run ``work`` in a daemon thread for at most ``timeout`` seconds, inside someone else's task.

    Returns its result, ``"failed: ..."`` if it raised, or None if it did not finish in time (the
    thread is abandoned; it is a daemon and holds only its own connection).
    """
    outcome: dict[str, str] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except Exception as exc:
            outcome["result"] = f"failed: {type(exc).__name__}: {exc}"

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    worker.join(timeout)
    return outcome.get("result")


def _log_outcome(key: str, result: str, elapsed: float) -> None:
    if result.startswith(("failed", "timed out", "dropped")):
        log.warning("medic: could not capture failure of %s: %s", key, result)
    else:
        log.info("medic: %s %s in %.0f ms", result, key, elapsed * 1000)


class BackgroundWriter:
    """One daemon thread per process that stores records queued by long-lived server processes.

    The queue is bounded: in a storm with medic's database down, records beyond it are dropped
    with a log line each (the sweep finds those failures later) instead of growing without end.
    """

    def __init__(self, maxsize: int = 1000) -> None:
        self.pid = os.getpid()
        self.queue: queue.Queue[tuple[FailureRecord, str, float]] = queue.Queue(maxsize=maxsize)
        self.thread = threading.Thread(target=self._run, name="medic-capture-writer", daemon=True)
        self.thread.start()

    def submit(self, record: FailureRecord, key: str) -> str:
        try:
            self.queue.put_nowait((record, key, time.monotonic()))
        except queue.Full:
            result = f"dropped: capture queue full ({self.queue.maxsize}); the sweep will pick it up"
            _log_outcome(key, result, 0.0)
            return result
        return "queued"

    def _run(self) -> None:
        while True:
            record, key, queued_at = self.queue.get()
            try:
                timeout = config.get_float("listener_timeout_seconds")
                result = _store(record, deadline=time.monotonic() + timeout)
            except Exception as exc:
                result = f"failed: {type(exc).__name__}: {exc}"
            _log_outcome(key, result, time.monotonic() - queued_at)
            self.queue.task_done()


_writer: BackgroundWriter | None = None
_writer_lock = threading.Lock()


def background_writer() -> BackgroundWriter:
    """The process's writer; a forked child (the LocalExecutor forks) gets its own."""
    global _writer
    with _writer_lock:
        if _writer is None or _writer.pid != os.getpid():
            _writer = BackgroundWriter()
        return _writer


def _map_index(ti: TaskInstance) -> int:
    value = getattr(ti, "map_index", None)
    return -1 if value is None else int(value)


def _key(ti: TaskInstance) -> str:
    try:
        return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}[{ti.map_index}]#{ti.try_number}"
    except Exception:
        return "<unknown task instance>"


def _build(task_instance: TaskInstance, error: TaskError, source: FailureSource) -> FailureRecord:
    log_tail = ""
    if source == "task":
        log_tail = read_log_tail(local_log_path(task_instance), config.get_int("log_tail_bytes"))
    record = build_record(
        task_instance, error, source=source, log_tail=log_tail, traceback_chars=config.get_int("traceback_chars")
    )
    record = mask_registered_secrets(record)
    retry_policy = sys.modules.get("medic.policy.retry")  # loaded where medic's retry policy decided this try
    if retry_policy is not None:
        record.retry_decision = retry_policy.recorded_decision(task_instance)
    return record


def _store(record: FailureRecord, *, deadline: float) -> str:
    # This module loads in every task process that finishes (the plugin's success hook): the
    # database client and what writes with it load only when there is something to write, and
    # inside the time bound.
    import psycopg  # noqa: PLC0415

    from medic import db  # noqa: PLC0415
    from medic.capture import outbox  # noqa: PLC0415

    remaining = max(0.5, deadline - time.monotonic())
    with db.connect(
        config.get("conn_id"),
        connect_timeout=max(1, int(remaining)),
        statement_timeout_ms=int(remaining * 1000),
        application_name=f"medic-capture-{record.source}",
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
        if not record.will_retry and not record.manually_failed:
            # a re-run medic started that failed for good: its incident is verified failed
            from medic.verify import verification  # noqa: PLC0415 (as psycopg above)

            verification.record_run_outcome(
                conn,
                dag_id=record.dag_id,
                run_id=record.run_id,
                task_id=record.task_id,
                map_index=record.map_index,
                try_number=record.try_number,
                succeeded=False,
            )
            conn.commit()
    if captured.event_id is None:
        return "already captured (kept the richer report)"
    verb = "captured" if captured.inserted else "enriched"
    kind = "retrying try" if record.will_retry else "failure"
    return f"{verb} {kind} as event {captured.event_id}:"


def record_success(task_instance: TaskInstance) -> str:
    """A task instance succeeded in its own process: if medic re-ran it, verify the fix.

    Same contract as capture (never raise, bounded in time). A first try can never be medic's
    re-run, so the common case costs no database round trip.
    """
    try:
        dag_id = str(getattr(task_instance, "dag_id", "") or "")
        if dag_id in config.skipped_dag_ids() or int(getattr(task_instance, "try_number", 1) or 1) <= 1:
            return "not a re-run"
        if detect_source(task_instance) != "task":  # marked success by a person: not a fix
            return "not a task process"
        timeout = config.get_float("listener_timeout_seconds")
        key = _FinishedTry(
            dag_id=dag_id,
            run_id=str(task_instance.run_id),
            task_id=str(task_instance.task_id),
            map_index=_map_index(task_instance),
            try_number=int(task_instance.try_number),
            started_at=getattr(task_instance, "start_date", None),
        )
    except Exception as exc:
        log.warning("medic: verification skipped: %s: %s", type(exc).__name__, exc)
        return "skipped"
    started = time.monotonic()

    def work() -> str:
        from medic import db  # noqa: PLC0415 (as in _store: only a re-run's success gets here)
        from medic.verify import verification  # noqa: PLC0415

        with db.connect(
            config.get("conn_id"),
            connect_timeout=max(1, int(timeout)),
            statement_timeout_ms=int(timeout * 1000),
            autocommit=True,
            application_name="medic-verify",
        ) as conn:
            closed = verification.record_run_outcome(conn, succeeded=True, **key)
        return f"verified {closed}" if closed else "not medic's re-run"

    result = _bounded(work, timeout, "medic-verify") or f"timed out after {timeout:.1f}s"
    if result.startswith(("failed", "timed out")):
        log.warning("medic: could not verify %s/%s/%s: %s", key["dag_id"], key["run_id"], key["task_id"], result)
    elif result.startswith("verified"):
        log.info("medic: %s in %.0f ms", result, (time.monotonic() - started) * 1000)
    return result
