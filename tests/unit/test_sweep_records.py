"""Records the sweep builds from what Airflow's REST API says about a failure no listener saw."""

from __future__ import annotations

import json

from medic.capture.sweep import error_of, log_text, record_from_api, try_key
from medic_dev.examples import PLANTED_PASSWORD

# a task instance as GET /api/v2/dags/~/dagRuns/~/taskInstances returns it (fields medic reads)
API_TI = {
    "dag_id": "sales",
    "dag_run_id": "scheduled__2026-11-20T00:00:00+00:00",
    "task_id": "load",
    "map_index": 3,
    "try_number": 2,
    "max_tries": 1,
    "state": "failed",
    "operator_name": "@task",
    "queue": "default",
    "hostname": "worker-7",
    "start_date": "2026-11-21T14:17:58.637287Z",
    "end_date": "2026-11-21T14:18:08.604738Z",
    "logical_date": "2026-11-20T00:00:00Z",
    "run_after": "2026-11-20T00:00:00Z",
    "dag_version": {"id": "01a1fe77-8db0-7b8f-b256-e00c37ce6ed2", "version_number": 1},
}


def entry(event: str, level: str = "info", logger: str = "task", **extra) -> dict:
    return {"timestamp": "2026-11-21T14:18:03.412195Z", "event": event, "level": level, "logger": logger, **extra}


KILLED_LOG = [
    entry("Successfully emitted OpenLineage `START` event", logger="airflow.providers.openlineage.plugins.adapter"),
    entry("loading the whole partition into memory", logger="medic_dev.examples"),
    entry(
        "Process terminated by signal. Likely out of memory error (OOM).",
        level="critical",
        signal=-9,
        signal_name="SIGKILL",
    ),
]


def test_a_killed_process_is_recorded_from_the_supervisors_last_word() -> None:
    record = record_from_api(API_TI, KILLED_LOG, log_tail_bytes=16384)
    assert record.source == "sweep"
    assert (record.dag_id, record.run_id, record.task_id, record.map_index, record.try_number) == try_key(API_TI)
    assert record.state == "failed" and not record.will_retry
    assert record.error_message.startswith("the task process ended without reporting an error")
    assert "Process terminated by signal" in record.error_message and "SIGKILL" in record.error_message
    assert record.failed_at.isoformat().startswith("2026-11-21T14:18:08")
    assert record.logical_date is not None and record.hostname == "worker-7" and record.operator == "@task"
    assert record.dag_version_id == "01a1fe77-8db0-7b8f-b256-e00c37ce6ed2"
    assert "loading the whole partition" in record.log_tail
    assert "OpenLineage" not in record.log_tail  # routine bookkeeping lines are not evidence
    assert any("medic_sweep" in note for note in record.capture_notes)


def test_an_exception_in_the_log_gives_the_type_and_message() -> None:
    content = [
        entry("connecting to the warehouse"),
        entry(
            "Task failed with exception",
            level="error",
            error_detail=[{"exc_type": "psycopg.OperationalError", "exc_value": "connection refused", "frames": []}],
        ),
    ]
    record = record_from_api(API_TI, content, log_tail_bytes=16384)
    assert record.exception_type == "psycopg.OperationalError"
    assert record.error_message == "psycopg.OperationalError: connection refused"


def test_secrets_in_the_log_are_scrubbed_before_anything_is_stored() -> None:
    dsn = f"postgresql://loader:{PLANTED_PASSWORD}@warehouse:5432/db"
    content = [entry(f"connecting to {dsn}"), entry(f"ValueError: bad dsn {dsn}", level="error")]
    record = record_from_api(API_TI, content, log_tail_bytes=16384)
    assert PLANTED_PASSWORD not in record.model_dump_json()


def test_no_log_still_gives_a_record_that_says_so() -> None:
    record = record_from_api(API_TI, [], log_tail_bytes=16384)
    assert record.error_message == "the task process ended without reporting an error and left no log"


def test_a_huge_log_keeps_only_whole_lines_of_its_tail() -> None:
    content = [entry(f"row {i} " + "x" * 200) for i in range(10_000)] + ["plain line at the end"]
    text = log_text(content, 16384)
    assert len(text.encode()) <= 16384
    assert text.endswith("plain line at the end")
    first = text.splitlines()[0]
    assert json.loads(first)["event"].startswith("row ")  # no half line at the start


def test_error_of_prefers_the_last_exception() -> None:
    text = "\n".join(
        json.dumps(e)
        for e in (entry("ValueError: first", level="error"), entry("KeyError: 'customer_id'", level="error"))
    )
    assert error_of(text) == "KeyError: 'customer_id'"


def test_a_task_a_person_set_to_failed_is_recorded_as_manual_not_diagnosed() -> None:
    content = [
        entry("loading the partition"),
        entry("State of this instance has been externally set to failed. Terminating instance.", level="error"),
    ]
    assert record_from_api(API_TI, content, log_tail_bytes=16384).manually_failed
    assert not record_from_api(API_TI, KILLED_LOG, log_tail_bytes=16384).manually_failed
