"""Failure records from hostile inputs: huge, binary, unprintable, incomplete."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from medic.capture.records import build_record, clean_text, read_log_tail, render_log


@dataclass
class FakeTaskInstance:
    """Plain data in the shape Airflow passes to listeners (not a stand-in for a service)."""

    dag_id: str = "sales"
    run_id: str = "manual__2026-01-01T00:00:00+00:00"
    task_id: str = "load"
    map_index: int = -1
    try_number: int = 1
    max_tries: int = 0
    state: str | None = "failed"
    hostname: str = "worker-1"
    queue: str = "default"


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("boom")


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_record_from_real_exception_has_type_message_and_traceback() -> None:
    record = build_record(FakeTaskInstance(), _raise(KeyError("customer_id")), source="task")
    assert record.exception_type == "KeyError"
    assert record.error_message == "'customer_id'"
    assert "Traceback" in record.traceback and "KeyError" in record.traceback
    assert record.state == "failed" and not record.will_retry


def test_unprintable_error_still_gives_a_record() -> None:
    record = build_record(FakeTaskInstance(), _raise(Unprintable()), source="task")
    assert record.exception_type.endswith("Unprintable")
    assert "unprintable Unprintable" in record.error_message


def test_string_error_from_scheduler_recovers_type() -> None:
    record = build_record(FakeTaskInstance(), "psycopg.OperationalError: connection refused", source="scheduler")
    assert record.exception_type == "psycopg.OperationalError"
    assert record.traceback == ""


def test_retry_is_inferred_when_state_is_missing() -> None:
    record = build_record(FakeTaskInstance(state=None, try_number=1, max_tries=2), None, source="api-server")
    assert record.will_retry and record.state == "up_for_retry"
    assert record.capture_notes


def test_binary_bytes_become_safe_text() -> None:
    text = clean_text(b"ok \x00\x01\xff\xfe end", 100)
    assert "\x00" not in text and "ok" in text and "end" in text
    record = build_record(FakeTaskInstance(), _raise(ValueError("\x00bad\x00")), source="task")
    assert "\x00" not in record.model_dump_json()


def test_log_tail_reads_only_the_end_of_a_huge_file(tmp_path) -> None:
    path = tmp_path / "attempt=1.log"
    with open(path, "wb") as handle:
        handle.write(b"noise line\n" * (2 * 1024 * 1024))  # 22 MB
        handle.write(b"ERROR the real problem\n")
    assert os.path.getsize(path) > 20 * 1024 * 1024
    tail = read_log_tail(path, 4096)
    assert tail.endswith("ERROR the real problem\n")
    assert len(tail) <= 4096
    assert read_log_tail(tmp_path / "missing.log", 4096) == ""


def test_structured_log_lines_are_rendered_for_people() -> None:
    raw = (
        '{"timestamp":"2026-01-01T00:00:01.5Z","level":"info","event":"GET /orders","logger":"app"}\n'
        "plain print line\n"
        '{"timestamp":"2026-01-01T00:00:02Z","level":"error","event":"Task failed","logger":"task",'
        '"error_detail":[{"exc_type":"KeyError","exc_value":"\'x\'"}]}'
    )
    rendered = render_log(raw).splitlines()
    assert rendered[0] == "2026-01-01 00:00:01 INFO    app: GET /orders"
    assert rendered[1] == "plain print line"
    assert rendered[-1].strip() == "KeyError: 'x'"


def test_the_platforms_routine_lines_are_not_evidence_but_its_warnings_are() -> None:
    def line(level: str, event: str, logger: str) -> str:
        return json.dumps({"level": level, "event": event, "logger": logger})

    adapter = "airflow.providers.openlineage.plugins.adapter.OpenLineageAdapter"
    raw = "\n".join(
        [
            line("info", "OpenLineageClient will use `file` transport", "openlineage.client.client"),
            line("info", "Successfully emitted OpenLineage `FAIL` event of id `x`", adapter),
            line("warning", "Failed to emit OpenLineage `FAIL` event", adapter),
            line("info", "medic: captured failure as event 2", "medic.capture.listener"),
            line("error", "Task failed with exception", "task"),
            line("info", "connecting to the warehouse", "medic_dev.examples"),  # a task's own code
        ]
    )
    rendered = render_log(raw)
    assert "Successfully emitted" not in rendered and "will use" not in rendered and "medic:" not in rendered
    assert "Failed to emit OpenLineage" in rendered and "Task failed with exception" in rendered
    assert "connecting to the warehouse" in rendered


def test_secrets_in_message_traceback_and_log_are_scrubbed() -> None:
    error = _raise(RuntimeError("login failed for postgresql://u:TopSecret99@h/db"))
    record = build_record(
        FakeTaskInstance(),
        error,
        source="task",
        log_tail="password=TopSecret99\n",
        now=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    assert "TopSecret99" not in record.model_dump_json()


def test_no_control_character_survives_in_any_field_whatever_built_the_record() -> None:
    raw_log = '{"timestamp":"t","level":"info","event":"payload dump: \\u0000\\u0001 end","logger":"task.stdout"}'
    record = build_record(FakeTaskInstance(), _raise(ValueError("x")), source="task", log_tail=raw_log)
    assert "payload dump:" in record.log_tail and "\x00" not in record.log_tail
    direct = record.model_copy(update={"error_message": "a\x00b"})
    assert "\x00" not in type(record).model_validate(direct.model_dump()).error_message


def test_a_person_marking_a_task_failed_is_flagged_as_manual() -> None:
    error = "TaskInstance's state was manually set to `failed`."
    assert build_record(FakeTaskInstance(), error, source="api-server").manually_failed
    assert not build_record(FakeTaskInstance(), _raise(RuntimeError("x")), source="task").manually_failed


def test_values_known_to_airflows_secrets_masker_are_removed() -> None:
    from airflow.sdk.log import mask_secret

    from medic.capture.records import mask_registered_secrets

    mask_secret("an-unpatterned-credential-42")  # what the SDK does when a task fetches a Connection
    error = _raise(PermissionError("rejected an-unpatterned-credential-42"))
    record = mask_registered_secrets(
        build_record(FakeTaskInstance(), error, source="task", log_tail="using an-unpatterned-credential-42\n")
    )
    dumped = record.model_dump_json()
    assert "an-unpatterned-credential-42" not in dumped
    assert "[REDACTED:sensitive_value]" in record.error_message
