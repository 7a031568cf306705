"""The listener's contract: never raise, bounded in time, skip medic's own DAGs."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from medic import db
from medic.capture.listener import capture_failure
from tests.unit.test_records import FakeTaskInstance


@pytest.fixture
def conn_env(monkeypatch):
    # In a task process Airflow's SDK is loaded already; a cold import (~4 s) is not capture time.
    import airflow.sdk  # noqa: F401

    def point_at(host: str, port: int) -> None:
        conn = {"conn_type": "postgres", "host": host, "port": port, "login": "x", "schema": "medic"}
        monkeypatch.setenv("AIRFLOW_CONN_MEDIC_CAPTURE_TEST", json.dumps(conn))
        monkeypatch.setenv("AIRFLOW__MEDIC__CONN_ID", "medic_capture_test")
        db._cache.pop("medic_capture_test", None)

    return point_at


def test_unreachable_database_is_reported_not_raised(conn_env) -> None:
    conn_env("127.0.0.1", 9)
    result = capture_failure(FakeTaskInstance(), RuntimeError("x"), source="task")
    assert result.startswith("failed:")


def test_a_hanging_database_cannot_hold_the_task(conn_env, monkeypatch) -> None:
    # a server that accepts TCP connections and never answers
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    conn_env("127.0.0.1", server.getsockname()[1])
    monkeypatch.setenv("AIRFLOW__MEDIC__LISTENER_TIMEOUT_SECONDS", "1.5")
    started = time.monotonic()
    result = capture_failure(FakeTaskInstance(), RuntimeError("x"), source="task")
    elapsed = time.monotonic() - started
    server.close()
    assert elapsed < 2.5
    assert result.startswith(("timed out", "failed:"))


def test_medic_own_dags_are_never_captured(conn_env) -> None:
    conn_env("127.0.0.1", 9)
    assert capture_failure(FakeTaskInstance(dag_id="medic_diagnose"), RuntimeError("x")).startswith("skipped")


def test_broken_task_instance_does_not_escape() -> None:
    class Hostile:
        def __getattr__(self, name):
            raise RuntimeError(f"no {name}")

    result = capture_failure(Hostile(), RuntimeError("x"), source="task")
    assert isinstance(result, str)


def test_server_processes_never_wait_on_the_database(conn_env, monkeypatch) -> None:
    # a database that accepts and never answers: the task path would wait its full bound
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    conn_env("127.0.0.1", server.getsockname()[1])
    monkeypatch.setenv("AIRFLOW__MEDIC__LISTENER_TIMEOUT_SECONDS", "2")
    started = time.monotonic()
    results = [capture_failure(FakeTaskInstance(try_number=n), "boom", source="scheduler") for n in range(5)]
    elapsed = time.monotonic() - started
    server.close()
    assert results == ["queued"] * 5
    assert elapsed < 0.5  # five failures, no waiting in the scheduler's loop


def test_a_full_queue_drops_with_a_reason_instead_of_growing(conn_env, monkeypatch) -> None:
    from medic.capture.listener import BackgroundWriter
    from medic.capture.records import build_record

    server = socket.socket()  # a database that accepts and never answers: the writer is stuck
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    conn_env("127.0.0.1", server.getsockname()[1])
    monkeypatch.setenv("AIRFLOW__MEDIC__LISTENER_TIMEOUT_SECONDS", "3")
    writer = BackgroundWriter(maxsize=1)
    record = build_record(FakeTaskInstance(), "boom", source="scheduler")
    first = writer.submit(record, "k1")
    time.sleep(0.3)  # the writer has taken it and waits on the silent server
    outcomes = [first, writer.submit(record, "k2"), writer.submit(record, "k3")]
    server.close()
    assert outcomes[:2] == ["queued", "queued"]
    assert outcomes[2].startswith("dropped: capture queue full (1)")
