"""Scale-out on Celery: a second worker serves only the ``llm`` queue, and generation runs there.

The module starts its own stack (its own PostgreSQL, Airflow with the CeleryExecutor, a private
Redis from Debian's ``redis-server`` as broker, and two ``airflow celery worker`` processes: one
for the ``default`` queue, one for ``llm``), configured for generation on CPU with a tiny model.
It never starts the session stack, and stops it (its Airflow processes) where an earlier module
had: never two stacks at once. It runs last in the tier (E2E_LAST in tests/conftest.py), and
stops everything it started at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

from medic_dev.stack import COMPONENTS, Stack, free_port
from tests.e2e.helpers import query, wait_filed, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from medic_dev.rest_client import DevRestClient

# no skip without Redis: the stack says "apt-get install redis-server" and the test errors
# own_stack: tests/e2e/conftest.py neither starts nor configures the session stack for it
pytestmark = [pytest.mark.e2e, pytest.mark.own_stack]

HOST = socket.gethostname()  # what medic.stack.worker_hostname builds on


@pytest.fixture(scope="module")
def celery_stack(
    request: pytest.FixtureRequest, without_session_stack: None, llm_python: str, tiny_model: str
) -> Iterator[Stack]:
    # short path: the PostgreSQL socket lives in it
    home = Path(tempfile.mkdtemp(prefix="medic-c-", dir="/tmp"))
    stack = Stack(
        home=home,
        api_port=free_port(),
        executor="celery",
        extra_env={
            "AIRFLOW__MEDIC__LLM_BACKEND": "cpu",
            "AIRFLOW__MEDIC__LLM_PYTHON": llm_python,
            "AIRFLOW__MEDIC__LLM_MODEL": tiny_model,
        },
    )
    try:
        stack.up(timeout=420)
        yield stack
    finally:
        stack.down(stop_postgres=True)
        if request.session.testsfailed or os.environ.get("MEDIC_KEEP_TEST_STACK"):
            print(f"\nmedic: celery test stack kept for inspection in {home} (logs in {home / 'logs'})")
        else:
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def client(celery_stack: Stack) -> Iterator[DevRestClient]:
    client = celery_stack.client()
    yield client
    client.close()


def _stack_processes(stack: Stack) -> list[str]:
    """Whatever still runs of this stack: by its recorded process groups, its home, its Redis port."""
    home, port = str(stack.home), str(stack.redis_port())
    left = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            env = proc.environ() if proc.pid != os.getpid() else {}
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if home in cmdline or env.get("MEDIC_STACK_HOME") == home or f"127.0.0.1:{port}" in cmdline:
            left.append(f"{proc.pid} {cmdline[:120]}")
    return left


def _settled(client: DevRestClient, run_id: str, task_ids: tuple[str, ...]) -> dict[str, dict] | None:
    tis = {ti["task_id"]: ti for ti in client.task_instances("medic_diagnose", run_id)}
    done = ("success", "failed", "upstream_failed", "skipped")
    return tis if all(tis.get(t, {}).get("state") in done for t in task_ids) else None


def test_generation_runs_on_the_llm_worker_and_the_rest_on_the_default_worker(celery_stack, client) -> None:
    stack = celery_stack
    assert stack.env()["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert all(stack.running().values()), stack.running()
    task = client.get("/api/v2/dags/medic_diagnose/tasks/generate_diagnoses")
    assert (task["queue"], task["operator_name"]) == ("llm", "@task.external_python")

    run_id = client.trigger("demo_missing_input")
    assert client.wait_for_run("demo_missing_input", run_id, timeout=300) == "failed"
    (event,) = wait_filed(stack, "demo_missing_input", run_id, 1, 180)
    diagnose_run = event["processed_by"]
    # not the whole run: a random model's valid answer may leave an approval waiting for a person
    tis = wait_for(
        lambda: _settled(client, diagnose_run, ("generate_diagnoses", "decide_incidents")), 600, "generation"
    )
    generate = tis["generate_diagnoses"]
    # Airflow's own record of where it ran: the llm queue, and the llm worker's hostname
    assert (generate["state"], generate["queue"], generate["hostname"]) == ("success", "llm", f"{HOST}-llm-worker")
    ran = [ti for ti in tis.values() if ti["state"] == "success" and ti["task_id"] != "generate_diagnoses"]
    assert {"claim_failure_events", "file_incidents", "diagnose_incidents", "decide_incidents"} <= {
        ti["task_id"] for ti in ran
    }
    for ti in ran:
        assert (ti["queue"], ti["hostname"]) == ("default", f"{HOST}-default-worker"), ti
    # the demo task itself ran on the default worker too
    (failed,) = client.task_instances("demo_missing_input", run_id)
    assert failed["hostname"] == f"{HOST}-default-worker"

    # Celery's side: the llm worker received generate_diagnoses of this run, and nothing else;
    # the default worker never received it
    llm_log, default_log = stack.worker_log("worker-llm"), stack.worker_log("worker-default")
    received = [line for line in llm_log.splitlines() if "Executing workload in Celery" in line]
    assert any(f"task_id='generate_diagnoses', dag_id='medic_diagnose', run_id='{diagnose_run}'" in r for r in received)
    assert all("task_id='generate_diagnoses'" in r for r in received), received
    assert "task_id='generate_diagnoses'" not in default_log
    assert f"task_id='claim_failure_events', dag_id='medic_diagnose', run_id='{diagnose_run}'" in default_log

    # and the model's diagnosis reached medic's database, from the generation environment
    rows = query(
        stack,
        "SELECT source, generation->>'backend' FROM medic.diagnoses WHERE incident_id = %s ORDER BY id",
        (event["incident_id"],),
    )
    assert ("llm:cpu", "cpu") in rows, rows

    # everything stops: Airflow, both workers and their task processes, Redis, PostgreSQL
    pids = stack._state()["pids"]
    assert set(pids) == {*COMPONENTS, "redis", "worker-default", "worker-llm"}
    stack.down(stop_postgres=True)
    assert not stack.postgres_running()
    deadline = time.monotonic() + 30
    while (left := _stack_processes(stack)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not left, left
    for name, pid in pids.items():
        assert stack.pid(name) is None
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
