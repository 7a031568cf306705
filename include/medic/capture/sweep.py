"""The safety net: failures no listener captured, found through Airflow's REST API.

A listener reports a failure from inside the process that failed. It cannot when that
process dies (SIGKILL from the OOM killer, an evicted pod), when medic's database was down at
that moment, or when capture ran out of time. ``medic_sweep`` asks Airflow for the final
failures it recorded in a lookback window, keeps those the outbox lacks, builds their records
from what the API has (the task instance and its log) and stores them on the same natural key
with ``source = 'sweep'``. A second sweep, or the listener's report arriving late, never files
a failure twice: the outbox keeps one row per try and the richer report wins while it waits.

The sweep also closes remediations whose re-run finished without the listener seeing it: it
reads the re-run's state from the API and records the verified outcome the listener would have.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Protocol

from medic import config, db
from medic.airflow_api import AirflowApi, parse_time
from medic.capture import outbox
from medic.capture.records import FailureRecord, build_record, clean_text, render_log, whole_line_tail
from medic.diagnose.fingerprint import last_error_line, last_exception
from medic.verify import verification

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

#: The try as the outbox keys it.
TryKey = tuple[str, str, str, int, int]


class SweepApi(Protocol):
    """What the sweep reads from Airflow; the real one is :class:`medic.airflow_api.AirflowApi`."""

    def failed_task_instances(self, since: datetime, until: datetime) -> list[dict[str, Any]]: ...

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int) -> list[Any]: ...

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SweepSettings:
    lookback: timedelta  # how far back a sweep looks for failures
    grace: timedelta  # a failure younger than this is the listener's to report
    max_records: int  # at most this many new records per sweep (each costs a log read)
    log_tail_bytes: int

    @classmethod
    def from_config(cls) -> SweepSettings:
        return cls(
            lookback=timedelta(minutes=config.get_float("sweep_lookback_minutes")),
            grace=timedelta(seconds=config.get_float("sweep_grace_seconds")),
            max_records=config.get_int("sweep_max_records"),
            log_tail_bytes=config.get_int("log_tail_bytes"),
        )


@dataclass
class SweepResult:
    seen: int = 0  # final failures Airflow reported in the window (medic's own DAGs excluded)
    already_captured: int = 0
    recorded: list[int] = field(default_factory=list)  # outbox ids the sweep wrote
    deferred: int = 0  # left for the next sweep (max_records reached)
    verified: list[dict[str, Any]] = field(default_factory=list)  # remediations it closed
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "already_captured": self.already_captured,
            "recorded": len(self.recorded),
            "deferred": self.deferred,
            "verified": len(self.verified),
            "problems": self.problems[:20],
        }


def try_key(ti: dict[str, Any]) -> TryKey:
    return (ti["dag_id"], ti["dag_run_id"], ti["task_id"], int(ti.get("map_index", -1)), int(ti["try_number"]))


def log_text(content: list[Any], limit_bytes: int) -> str:
    """A task log as the API returns it (structured entries or lines) as JSON lines, the tail kept.

    ``render_log`` (in ``build_record``) then reads it as it reads a log file.
    """
    lines = []
    for entry in content or []:
        if isinstance(entry, dict):
            lines.append(json.dumps(entry, default=str))
        else:
            lines.append(str(entry))
    return whole_line_tail("\n".join(lines).encode("utf-8", "replace"), limit_bytes)


#: what a task's log says when someone set its state from outside (the UI, the REST API)
_SET_BY_A_PERSON = re.compile(r"(?i)externally set to failed|state was manually set to")

#: render_log's "time level logger:" prefix
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+[A-Z]*\s+[\w.]*:\s*")


def error_of(text: str) -> str:
    """What went wrong, as the log says it: the last exception, else the last line that sounds
    like an error, else that the process died without a word (a SIGKILL leaves no exception)."""
    rendered = render_log(text)
    exception_type, message = last_exception(rendered)
    if exception_type:
        return f"{exception_type}: {message}"
    line = _LOG_PREFIX.sub("", last_error_line(rendered))
    if line:
        return f"the task process ended without reporting an error; its log ends with: {line}"
    return "the task process ended without reporting an error and left no log"


def record_from_api(ti: dict[str, Any], content: list[Any], *, log_tail_bytes: int) -> FailureRecord:
    """The failure record of a task instance as Airflow's REST API describes it."""

    def when(name: str) -> datetime | None:
        value = ti.get(name)
        if isinstance(value, datetime):
            return value
        return parse_time(value) if value else None

    text = log_text(content, log_tail_bytes)
    version = ti.get("dag_version") or {}
    failed_at = when("end_date") or datetime.now(timezone.utc)
    instance = SimpleNamespace(
        dag_id=ti["dag_id"],
        run_id=ti["dag_run_id"],
        task_id=ti["task_id"],
        map_index=int(ti.get("map_index", -1)),
        try_number=int(ti["try_number"]),
        max_tries=ti.get("max_tries"),
        state="failed",
        operator=ti.get("operator_name") or ti.get("operator"),
        queue=ti.get("queue"),
        hostname=ti.get("hostname") or None,
        dag_version_id=str(version["id"]) if version.get("id") else None,
        start_date=when("start_date"),
        dag_run=SimpleNamespace(logical_date=when("logical_date"), run_after=when("run_after")),
    )
    record = build_record(instance, error_of(text), source="sweep", log_tail=text, now=failed_at)
    record.capture_notes.append("found by medic_sweep: no listener reported this failure")
    if _SET_BY_A_PERSON.search(text):  # "externally set to failed": recorded, never diagnosed
        record = record.model_copy(update={"manually_failed": True})
    return record


_KNOWN = """
SELECT k.dag_id, k.run_id, k.task_id, k.map_index, k.try_number
  FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::int[])
       AS k(dag_id, run_id, task_id, map_index, try_number)
  JOIN medic.failure_events e USING (dag_id, run_id, task_id, map_index, try_number)
"""


def known_tries(conn: psycopg.Connection, keys: list[TryKey]) -> set[TryKey]:
    """The tries among ``keys`` that the outbox holds already."""
    if not keys:
        return set()
    columns = [list(column) for column in zip(*keys, strict=True)]
    rows = conn.execute(_KNOWN, columns).fetchall()
    return {(d, r, t, int(m), int(n)) for d, r, t, m, n in rows}


def sweep_failures(
    conn: psycopg.Connection, api: SweepApi, settings: SweepSettings, *, now: datetime | None = None
) -> SweepResult:
    """Record every final failure in the window that the outbox lacks; one commit per record."""
    now = now or datetime.now(timezone.utc)
    skipped = config.skipped_dag_ids()
    failed = [
        ti
        for ti in api.failed_task_instances(now - settings.lookback, now - settings.grace)
        if ti.get("dag_id") not in skipped and ti.get("state") == "failed" and ti.get("try_number")
    ]
    result = SweepResult(seen=len(failed))
    known = known_tries(conn, [try_key(ti) for ti in failed])
    result.already_captured = sum(1 for ti in failed if try_key(ti) in known)
    missing = [ti for ti in failed if try_key(ti) not in known]
    result.deferred = max(0, len(missing) - settings.max_records)
    for ti in missing[: settings.max_records]:
        key = try_key(ti)
        try:
            content = api.task_log(key[0], key[1], key[2], key[4], key[3])
        except Exception as exc:  # a log that cannot be read does not cost the failure
            content = []
            result.problems.append(f"{'/'.join(map(str, key))}: log unavailable ({type(exc).__name__})")
        try:
            record = record_from_api(ti, content, log_tail_bytes=settings.log_tail_bytes)
            if not content:
                record.capture_notes.append("the task log could not be read")
            captured = outbox.record_failure(conn, record, diagnose_retries=False)
            conn.commit()
        except Exception as exc:  # one bad record must not stop the sweep for every later failure
            conn.rollback()
            result.problems.append(f"{'/'.join(map(str, key))}: not recorded ({type(exc).__name__}: {exc})"[:300])
            continue
        if captured.event_id is not None:
            result.recorded.append(captured.event_id)
            log.info(
                "medic: sweep recorded %s as event %s: %s",
                "/".join(map(str, key)),
                captured.event_id,
                clean_text(record.error_message, 200),
            )
    return result


_UNVERIFIED = """
SELECT t.dag_id, t.run_id, t.task_id, t.map_index, t.failed_try
  FROM medic.remediation_targets t JOIN medic.remediations r ON r.id = t.remediation_id
 WHERE r.status = 'applied' AND r.verified_outcome IS NULL AND t.cleared AND t.outcome IS NULL
   AND r.applied_at < %(before)s AND r.applied_at > %(since)s
 ORDER BY r.applied_at DESC LIMIT %(limit)s
"""


#: states in which a re-run is over without having succeeded
_ENDED_WITHOUT_SUCCESS = frozenset({"failed", "upstream_failed", "skipped", "removed"})


def reconcile_remediations(
    conn: psycopg.Connection, api: SweepApi, *, before: datetime, since: datetime, limit: int = 200
) -> tuple[list[dict[str, Any]], list[str]]:
    """Close re-runs that finished without the listener recording it (its process was killed,
    medic's database was down): the API's state of the re-run is the outcome."""
    closed: list[dict[str, Any]] = []
    problems: list[str] = []
    rows = conn.execute(_UNVERIFIED, {"before": before, "since": since, "limit": limit}).fetchall()
    for dag_id, run_id, task_id, map_index, failed_try in rows:
        try:
            ti = api.task_instance(dag_id, run_id, task_id, map_index)
        except Exception as exc:
            problems.append(f"{dag_id}/{run_id}/{task_id}: state unavailable ({type(exc).__name__})")
            continue
        state, try_number = ti.get("state"), int(ti.get("try_number") or 0)
        if try_number <= failed_try or state not in ("success", *_ENDED_WITHOUT_SUCCESS):
            continue  # not re-run yet, or still running: the listener may still report it
        closed += verification.record_run_outcome(
            conn,
            dag_id=dag_id,
            run_id=run_id,
            task_id=task_id,
            map_index=map_index,
            try_number=try_number,
            succeeded=state == "success",
            started_at=ti.get("start_date"),
        )
        conn.commit()
    return closed, problems


def run_sweep(now: datetime | None = None) -> dict[str, Any]:
    """The sweep task: failures first, then unverified re-runs; returns the summary for XCom."""
    now = now or datetime.now(timezone.utc)
    settings = SweepSettings.from_config()
    api = AirflowApi.from_connection(config.get("api_conn_id"))
    with db.connect(config.get("conn_id"), application_name="medic-sweep") as conn:
        result = sweep_failures(conn, api, settings, now=now)
        result.verified, problems = reconcile_remediations(
            conn, api, before=now - settings.grace, since=now - settings.lookback
        )
        result.problems += problems
    summary = result.summary()
    log.info("medic: sweep %s", json.dumps(summary))
    return summary
