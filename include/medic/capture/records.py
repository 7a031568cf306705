"""The failure record (DESIGN "Contracts") and its safe construction from whatever Airflow hands us.

The listener is called from three places: the task process (a RuntimeTaskInstance and the
real exception), the scheduler and the api-server (an ORM TaskInstance and, at best, a
string). Every field is read defensively: a record is always produced, even from an error
whose ``str()`` raises or a log full of binary bytes, and every text field is bounded.
"""

from __future__ import annotations

import json
import os
import re
import traceback
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from medic.capture.scrub import mask_registered, scrub
from medic.diagnose.fingerprint import last_exception

FailureSource = Literal["task", "scheduler", "api-server", "sweep", "external"]

#: Higher is richer: the task process has the real exception and traceback.
SOURCE_RANK: dict[str, int] = {"task": 3, "sweep": 2, "api-server": 1, "scheduler": 1, "external": 0}

#: What Airflow's api-server passes as the error when a person sets a task instance to failed.
MANUAL_FAILURE_MARKER = "state was manually set to"

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class FailureRecord(BaseModel):
    """One failed try of one task instance, scrubbed."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int = Field(ge=0)
    max_tries: int | None = None
    state: Literal["failed", "up_for_retry"] = "failed"
    will_retry: bool = False
    manually_failed: bool = False  # a person set the state; recorded, never diagnosed
    operator: str | None = None
    queue: str | None = None
    hostname: str | None = None
    dag_version_id: str | None = None
    bundle_version: str | None = None
    exception_type: str | None = None
    error_message: str = ""
    traceback: str = ""
    log_tail: str = ""
    started_at: datetime | None = None
    failed_at: datetime
    # the DAG run's dates: with these, lineage can name the failed task's OpenLineage run
    logical_date: datetime | None = None
    run_after: datetime | None = None
    clear_number: int = 0
    dag_tags: list[str] = Field(default_factory=list)  # for the policy's opt-out tag
    source: FailureSource = "task"
    capture_notes: list[str] = Field(default_factory=list)
    # medic's retry policy's decision on this try, made in the worker before Airflow retried or
    # failed it (medic.policy.retry): action, reason, delay, the precedents it stood on
    retry_decision: dict[str, Any] | None = None

    @field_validator("*", mode="after")
    @classmethod
    def _printable(cls, value: Any) -> Any:
        """No control characters in any text, whichever path built it (PostgreSQL rejects NUL)."""
        if isinstance(value, str):
            return _CONTROL.sub("\ufffd", value)
        if isinstance(value, list):
            return [_CONTROL.sub("\ufffd", v) if isinstance(v, str) else v for v in value]
        return value

    def minimal(self, reason: str) -> FailureRecord:
        """The same failure without the bulky evidence, for when the full record cannot be stored."""
        return self.model_copy(
            update={
                "log_tail": "",
                "traceback": self.traceback[-2000:],
                "capture_notes": [*self.capture_notes, reason[:300]],
            }
        )

    def storage_json(self) -> str:
        return self.model_dump_json()


#: Scrubbing runs in the failing task and costs time per character: a log tail handed to
#: build_record keeps at most this much (its last whole lines); the configured tail is 16 KiB.
MAX_LOG_TAIL_CHARS = 256 * 1024


def _bounded(text: str, limit: int) -> str:
    """The last ``limit`` characters of ``text``, starting at a line."""
    if len(text) <= limit:
        return text
    text = text[-limit:]
    return text.split("\n", 1)[1] if "\n" in text else text


def clean_text(value: Any, limit: int, *, keep: Literal["head", "tail"] = "tail") -> str:
    """Bounded, printable, Postgres-safe text (no NUL) from str, bytes or anything else."""
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        raw = raw[-limit * 4 :] if keep == "tail" else raw[: limit * 4]
        value = raw.decode("utf-8", errors="replace")
    elif not isinstance(value, str):
        value = safe_str(value)
    if len(value) > limit:
        value = value[-limit:] if keep == "tail" else value[:limit]
    return _CONTROL.sub("\ufffd", value)


def safe_str(obj: Any) -> str:
    """``str(obj)`` that never raises: some exceptions' __str__ do."""
    try:
        return str(obj)
    except Exception as exc:  # the object itself is broken; say so instead of failing
        try:
            return f"<unprintable {type(obj).__name__}: str() raised {type(exc).__name__}>"
        except Exception:
            return "<unprintable object>"


def format_traceback(error: BaseException, limit: int) -> str:
    try:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception as exc:
        text = f"<traceback unavailable: {type(exc).__name__}>"
    return clean_text(text, limit)


def read_log_tail(path: str | os.PathLike[str] | None, limit_bytes: int) -> str:
    """The last ``limit_bytes`` of a log file, without reading the rest (logs can be huge)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit_bytes))
            data = handle.read(limit_bytes)
    except OSError:
        return ""
    return whole_line_tail(data, limit_bytes, cut=size > limit_bytes)


def whole_line_tail(data: bytes, limit_bytes: int, *, cut: bool | None = None) -> str:
    """The last ``limit_bytes`` of ``data`` as safe text; when anything before them was cut off
    (``cut``; by default: ``data`` is longer), the partial first line goes too."""
    if cut is None:
        cut = len(data) > limit_bytes
    text = clean_text(data[-limit_bytes:], limit_bytes)
    if cut and "\n" in text:
        text = text.split("\n", 1)[1]  # drop the partial first line
    return text


#: Loggers whose routine (below WARNING) lines are the platform's bookkeeping around every
#: task, not the task's story: the OpenLineage provider says "emitted `FAIL` event" after each
#: failure, which reads like an error line and shifts the evidence of every failure alike.
BOOKKEEPING_LOGGERS = (
    "openlineage.",
    "airflow.providers.openlineage.",
    "airflow.dag_processing.",
    "medic.capture.listener",  # medic's own listener, not the task (medic.examples is a task's own code)
    "medic.verify.verification",
    "medic.lineage.events",
)
_ROUTINE_LEVELS = frozenset({"", "DEBUG", "INFO"})


def render_log(text: str) -> str:
    """Airflow 3 task logs are JSON lines; keep what a person reads: time, level, logger, event.

    An exception entry keeps its type and message (the full traceback is stored separately).
    Routine lines of bookkeeping loggers are left out; their warnings and errors are kept.
    Lines that are not JSON (plain prints, other handlers) are kept as they are.
    """
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if not (stripped.startswith("{") and stripped.endswith("}")):
            out.append(line)
            continue
        try:
            entry = json.loads(stripped)
        except ValueError:
            out.append(line)
            continue
        if not isinstance(entry, dict):
            out.append(line)
            continue
        stamp = str(entry.get("timestamp", ""))[:19].replace("T", " ")
        level = str(entry.get("level", "")).upper()
        logger = str(entry.get("logger") or "")
        if level in _ROUTINE_LEVELS and logger.startswith(BOOKKEEPING_LOGGERS):
            continue
        line = f"{stamp} {level:<7} {logger}: {entry.get('event', '')}".rstrip()
        if entry.get("signal_name"):  # the supervisor's word on a killed task process
            line += f" ({entry['signal_name']})"
        out.append(line)
        for detail in entry.get("error_detail") or []:
            if isinstance(detail, dict):
                out.append(f"    {detail.get('exc_type', 'Exception')}: {detail.get('exc_value', '')}")
    return "\n".join(out)


def mask_registered_secrets(record: FailureRecord) -> FailureRecord:
    """Replace every value Airflow's secrets masker knows in this process: the passwords and
    sensitive extras of Connections and the values of sensitive Variables the task fetched.

    ``build_record`` already does this first, before any pattern runs (a pattern that removed
    part of a registered value would leave the rest unrecognisable); this second pass catches a
    value registered between building the record and storing it.
    """
    updates = {}
    for name in ("error_message", "traceback", "log_tail"):
        value = getattr(record, name)
        if value:
            masked = mask_registered(value)
            if masked != value:
                updates[name] = masked
    return record.model_copy(update=updates) if updates else record


def _scrubbed(text: str, extra_secrets: tuple[str, ...], notes: list[str], name: str) -> str:
    """``scrub(text)``; should scrubbing itself fail, the field is withheld (fail closed) and the
    record says so, since the record must still be produced."""
    try:
        return scrub(text, extra_secrets)
    except Exception as exc:
        notes.append(f"scrubbing {name} failed ({type(exc).__name__}); withheld")
        return "[REDACTED:unscrubbable]" if text else ""


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    try:
        value = getattr(obj, name, default)
    except Exception:
        return default
    return default if value is None else value


def _state_value(state: Any) -> str:
    return str(getattr(state, "value", state) or "").lower()


def _to_str(value: Any) -> str | None:
    return None if value is None else clean_text(value, 500)


def _dag_tags(task_instance: Any) -> list[str]:
    """The DAG's tags where the process has the DAG (the task process does; the scheduler may not)."""
    tags = _attr(_attr(_attr(task_instance, "task"), "dag"), "tags")
    try:
        return sorted(clean_text(t, 100) for t in tags)[:50] if tags else []
    except TypeError:
        return []


def build_record(
    task_instance: Any,
    error: Any,
    *,
    source: FailureSource,
    log_tail: str = "",
    traceback_chars: int = 12000,
    extra_secrets: tuple[str, ...] = (),
    now: datetime | None = None,
) -> FailureRecord:
    """Build a scrubbed record; never raises for odd inputs (that is the listener's contract)."""
    notes: list[str] = []
    state = _state_value(_attr(task_instance, "state"))
    try_number = int(_attr(task_instance, "try_number", 0) or 0)
    max_tries = _attr(task_instance, "max_tries")
    max_tries = int(max_tries) if isinstance(max_tries, int) else None
    if state not in ("failed", "up_for_retry"):
        # the state may not be set yet when called; Airflow retries while tries remain
        state = "up_for_retry" if max_tries is not None and try_number <= max_tries else "failed"
        notes.append("state inferred from try_number/max_tries")

    exception_type: str | None = None
    tb = ""
    if isinstance(error, BaseException):
        exception_type = f"{type(error).__module__}.{type(error).__qualname__}".removeprefix("builtins.")
        message = safe_str(error)
        tb = format_traceback(error, traceback_chars)
    elif error is None:
        message = ""
        notes.append("no error object was passed")
    else:
        message = safe_str(error)
    if not isinstance(error, BaseException) and message:
        exception_type = last_exception(message)[0]

    dag_run = _attr(_attr(task_instance, "_ti_context_from_server"), "dag_run") or _attr(task_instance, "dag_run")
    task = _attr(task_instance, "task")
    operator = _attr(task_instance, "operator") or (type(task).__name__ if task is not None else None)
    bundle_instance = _attr(task_instance, "bundle_instance")
    return FailureRecord(
        dag_id=clean_text(_attr(task_instance, "dag_id", ""), 250),
        run_id=clean_text(_attr(task_instance, "run_id", ""), 250),
        task_id=clean_text(_attr(task_instance, "task_id", ""), 250),
        map_index=int(_attr(task_instance, "map_index", -1)),
        try_number=try_number,
        max_tries=max_tries,
        state=state,  # type: ignore[arg-type]
        will_retry=state == "up_for_retry",
        manually_failed=isinstance(error, str) and MANUAL_FAILURE_MARKER in error,
        operator=_to_str(operator),
        queue=_to_str(_attr(task_instance, "queue")),
        hostname=_to_str(_attr(task_instance, "hostname")),
        dag_version_id=_to_str(_attr(task_instance, "dag_version_id")),
        bundle_version=_to_str(_attr(bundle_instance, "version")) if bundle_instance is not None else None,
        exception_type=exception_type,
        error_message=_scrubbed(clean_text(message, 4000, keep="head"), extra_secrets, notes, "error_message"),
        traceback=_scrubbed(tb, extra_secrets, notes, "traceback"),
        log_tail=_scrubbed(
            _bounded(render_log(clean_text(log_tail, 10**7)), MAX_LOG_TAIL_CHARS), extra_secrets, notes, "log_tail"
        ),
        started_at=_attr(task_instance, "start_date"),
        failed_at=now or datetime.now(timezone.utc),
        logical_date=_attr(dag_run, "logical_date"),
        run_after=_attr(dag_run, "run_after"),
        clear_number=int(_attr(dag_run, "clear_number", 0) or 0),
        dag_tags=_dag_tags(task_instance),
        source=source,
        capture_notes=notes,
    )
