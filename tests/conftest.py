"""Shared fixtures: one embedded PostgreSQL (pgvector) per session, and the full Airflow stack.

Integration tests use their own database (``medic_it``) on the same server, so they never
race the running stack's trigger and diagnose DAG for rows in ``medic``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from medic_dev.stack import Stack, free_port

IT_CONN_ID = "medic_it_db"
IT_DATABASE = "medic_it"


@pytest.fixture(scope="session")
def stack_home(request: pytest.FixtureRequest) -> Iterator[Path]:
    # short path: the PostgreSQL socket lives in it (Unix socket paths are limited to ~100 bytes)
    home = Path(tempfile.mkdtemp(prefix="medic-t-", dir="/tmp"))
    yield home
    if request.session.testsfailed or os.environ.get("MEDIC_KEEP_TEST_STACK"):
        print(f"\nmedic: test stack kept for inspection in {home} (logs in {home / 'logs'})")
    else:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded(stack_home: Path) -> Iterator[Stack]:
    """The session's embedded stack handle; PostgreSQL started, Airflow not (yet)."""
    runbooks = stack_home / "runbooks"  # the stack's own copy: tests may edit it
    shutil.copytree(Path(__file__).resolve().parents[1] / "include" / "medic" / "diagnose" / "runbooks", runbooks)
    stack = Stack(
        home=stack_home,
        api_port=free_port(),
        extra_env={
            # recover a SIGKILLed triggerer's watcher sooner than the 30 s default
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
            "AIRFLOW__MEDIC__RUNBOOKS_PATH": str(runbooks),
            "AIRFLOW__MEDIC__RUNBOOK_POLL_SECONDS": "2",
            # approvals nobody answers expire after 30 s (the timeout test waits for that)
            "AIRFLOW__MEDIC__APPROVAL_TIMEOUT_MINUTES": "0.5",
            # the sweep runs when a test asks; a failure 5 s old is past the listener's time
            "AIRFLOW__MEDIC__SWEEP_INTERVAL_MINUTES": "720",
            "AIRFLOW__MEDIC__SWEEP_GRACE_SECONDS": "5",
            # a SIGKILLed scheduler's running tasks are found and reset within seconds, not minutes
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
        },
    )
    stack.start_postgres()
    yield stack
    stack.down(stop_postgres=True)


@pytest.fixture(scope="session")
def it_db(embedded: Stack) -> Iterator[str]:
    """A migrated medic database for integration tests, reachable as connection ``medic_it_db``."""
    embedded.migrate_medic(IT_DATABASE)
    conn = {**embedded.medic_conn(), "schema": IT_DATABASE}
    os.environ[f"AIRFLOW_CONN_{IT_CONN_ID.upper()}"] = json.dumps(conn)
    yield IT_CONN_ID


@pytest.fixture
def it_conn(embedded: Stack, it_db: str) -> Iterator[psycopg.Connection]:
    """A connection to a clean integration database (medic tables emptied)."""
    with embedded.connect_postgres(IT_DATABASE, autocommit=True) as conn:
        conn.execute("TRUNCATE medic.incidents, medic.failure_events RESTART IDENTITY CASCADE")
        yield conn


@pytest.fixture(scope="session")
def stack(embedded: Stack) -> Iterator[Stack]:
    """The real thing: PostgreSQL + Airflow api-server, scheduler, dag-processor, triggerer."""
    embedded.up(timeout=300)
    yield embedded


@pytest.fixture
def kb_conn(embedded: Stack, it_db: str) -> Iterator[psycopg.Connection]:
    """A connection to the integration database with an empty knowledge table."""
    with embedded.connect_postgres(IT_DATABASE) as conn:
        conn.execute("TRUNCATE medic.knowledge RESTART IDENTITY")
        conn.commit()
        yield conn


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def llm_python() -> str:
    """The generation environment's interpreter (``make llm-env``): a second environment, not Airflow's."""
    python = REPO / ".venv-llm" / "bin" / "python"
    assert python.exists(), "the generation environment is missing: run `make llm-env` (make test does)"
    return str(python)


@pytest.fixture(scope="session")
def tiny_model(llm_python: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random causal LM, built locally from a config in the generation environment."""
    import subprocess

    out = tmp_path_factory.mktemp("tiny-llm")
    subprocess.run([llm_python, "-m", "medic_dev.tiny_model", str(out)], check=True, capture_output=True, timeout=300)
    return str(out)
