"""The embedded stack's executors: the LocalExecutor by default, Celery with a worker per queue.

Only the configuration is checked here (no process starts); tests/e2e/test_celery.py runs it.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from medic_dev.stack import Stack, StackError, worker_hostname

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_stack_keeps_the_local_executor_and_nothing_of_celery(tmp_path: Path) -> None:
    stack = Stack(home=tmp_path, root=ROOT)
    env = stack.env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert not [key for key in env if "CELERY" in key or key == "AIRFLOW__CORE__HOSTNAME_CALLABLE"]
    assert stack.executor_components == ()
    assert "redis_port" not in stack._state()  # no port is even picked


def test_the_celery_stack_uses_its_redis_and_the_metadata_database(tmp_path: Path) -> None:
    stack = Stack(home=tmp_path, root=ROOT, executor="celery")
    env = stack.env()
    port = stack.redis_port()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == f"redis://127.0.0.1:{port}/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == (
        f"db+postgresql+psycopg://postgres@/airflow?host={stack.pg_socket_dir}"
    )
    # the port is kept: every component (and a later `medic stack ...`) agrees on it
    assert (
        Stack(home=tmp_path, root=ROOT, executor="celery").env()["AIRFLOW__CELERY__BROKER_URL"]
        == (env["AIRFLOW__CELERY__BROKER_URL"])
    )
    assert stack.executor_components == ("redis", "worker-default", "worker-llm")
    assert stack.worker_env("llm")["MEDIC_WORKER_NAME"] == "llm"
    assert stack.worker_env("llm")["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == "medic_dev.stack.worker_hostname"
    with pytest.raises(StackError):
        Stack(home=tmp_path, root=ROOT, executor="kubernetes").env()


def test_a_worker_reports_its_own_hostname_through_airflows_callable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDIC_WORKER_NAME", raising=False)
    assert worker_hostname() == socket.getfqdn()
    monkeypatch.setenv("MEDIC_WORKER_NAME", "llm")
    assert worker_hostname() == f"{socket.gethostname()}-llm-worker"
    # what the task supervisor sends as the task instance's hostname (the dotted form: Airflow 3.3
    # imports it with import_string, which rejects "module:function")
    from airflow.sdk.api.client import get_hostname

    callable_path = Stack(home=tmp_path, root=ROOT).worker_env("llm")["AIRFLOW__CORE__HOSTNAME_CALLABLE"]
    monkeypatch.setenv("AIRFLOW__CORE__HOSTNAME_CALLABLE", callable_path)
    assert get_hostname() == f"{socket.gethostname()}-llm-worker"
