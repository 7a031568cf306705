"""The e2e tier: the whole stack (embedded PostgreSQL and Airflow's processes), one per session.

The session stack starts for the first test that needs it and serves every module. A module
that needs other settings overrides the ``stack_settings`` fixture: before its first test the
components those settings reach are restarted, once, and only when they differ from what runs.
Nothing is restored afterwards: the modules that reconfigure run last (``E2E_LAST`` in
tests/conftest.py), and a module after them that needs the plain stack is given it back the
same way, so every module also passes alone and in any selection.

A module that brings a stack of its own is marked ``own_stack`` and asks for
``without_session_stack``: the session stack's Airflow processes are stopped first, since two
stacks at once on 2 cores slow both and the second one's timings mean nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import pytest

from medic.airflow_api import parse_time
from medic_dev.stack import COMPONENTS, Stack
from tests.e2e.helpers import wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from medic_dev.rest_client import DevRestClient

#: keys whose change reaches the DAG files themselves (parse time), not only running tasks
_PARSE_TIME_PREFIX = "AIRFLOW__MEDIC__"


@dataclass
class SessionStack:
    """The session stack and what it runs with now: its own settings plus a module's overrides."""

    stack: Stack
    base_env: dict[str, str]
    overrides: dict[str, str] = field(default_factory=dict)
    stopped: bool = False

    def ensure_up(self) -> None:
        if self.stopped:
            self.stack.up(timeout=300)
            self.stopped = False

    def configure(self, overrides: dict[str, str]) -> None:
        """Run the stack with ``overrides`` on top of the session's settings, restarting only the
        components they reach: the scheduler (it and the tasks it runs read them) and, for
        medic's settings, the dag-processor too (medic_diagnose's shape is decided at parse time)."""
        if overrides == self.overrides:
            return
        changed = {k for k in self.overrides.keys() | overrides.keys() if self.overrides.get(k) != overrides.get(k)}
        self.stack.extra_env.clear()
        self.stack.extra_env.update({**self.base_env, **overrides})
        reparse = any(key.startswith(_PARSE_TIME_PREFIX) for key in changed)
        restarted_at = datetime.now(timezone.utc)
        self.stack.restart_components(("dag-processor", "scheduler") if reparse else ("scheduler",))
        self.overrides = dict(overrides)
        if reparse:
            self._wait_reparsed(restarted_at)

    def _wait_reparsed(self, since: datetime) -> None:
        backend = self.stack.env().get("AIRFLOW__MEDIC__LLM_BACKEND", "none").strip().lower() or "none"
        generating = backend != "none"
        client = self.stack.client()
        try:

            def parsed() -> bool:
                dag = client.get("/api/v2/dags/medic_diagnose")
                if not dag.get("last_parsed_time") or parse_time(dag["last_parsed_time"]) < since:
                    return False
                tasks = {t["task_id"] for t in client.get("/api/v2/dags/medic_diagnose/tasks")["tasks"]}
                return ("generate_diagnoses" in tasks) == generating

            wait_for(parsed, 180, f"medic_diagnose re-parsed {'with' if generating else 'without'} a generate step", 1)
        finally:
            client.close()


_SESSION = pytest.StashKey[SessionStack]()


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest, embedded: Stack) -> Stack:
    """The real thing: PostgreSQL + Airflow api-server, scheduler, dag-processor, triggerer."""
    embedded.up(timeout=300)
    request.config.stash[_SESSION] = SessionStack(embedded, dict(embedded.extra_env))
    return embedded


@pytest.fixture(scope="module")
def stack_settings() -> dict[str, str]:
    """Settings this module needs on the session stack beyond its own; a module overrides this."""
    return {}


def _own_stack(request: pytest.FixtureRequest) -> bool:
    """A module marked ``own_stack`` (test_celery.py) never starts or touches the session stack."""
    return request.node.get_closest_marker("own_stack") is not None


@pytest.fixture(scope="module", autouse=True)
def stack_as_the_module_needs(request: pytest.FixtureRequest, stack_settings: dict[str, str]) -> None:
    """Before the module's first test and its module fixtures: the session stack up, with the
    module's settings (autouse fixtures of a scope come before the others of that scope)."""
    if _own_stack(request):
        return
    request.getfixturevalue("stack")
    session = request.config.stash[_SESSION]
    session.ensure_up()
    session.configure(stack_settings)


@pytest.fixture(autouse=True)
def all_components_running(request: pytest.FixtureRequest) -> None:
    """A test that kills a component and fails half-way must not break the tests after it."""
    if _own_stack(request):
        return
    stack = request.getfixturevalue("stack")
    for name in COMPONENTS:
        if stack.pid(name) is None:
            stack.start_component(name)
    if any(stack.pid(name) is None for name in COMPONENTS):
        pytest.fail("a stack component died and could not be restarted")


@pytest.fixture(scope="module")
def without_session_stack(request: pytest.FixtureRequest) -> None:
    """For a module with a stack of its own: the session stack's Airflow processes stop first
    (PostgreSQL, idle, stays for the session's other users). A later module that needs them
    gets them back from ``stack_as_the_module_needs``."""
    session = request.config.stash.get(_SESSION, None)
    if session is None or session.stopped:
        return
    started = time.monotonic()
    session.stack.down(stop_postgres=False)
    session.stopped = True
    print(f"\nmedic: session stack stopped in {time.monotonic() - started:.1f}s for a module with its own")


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[DevRestClient]:
    """A REST client of the stack's api-server, logged in as the admin user."""
    client = stack.client()
    yield client
    client.close()
