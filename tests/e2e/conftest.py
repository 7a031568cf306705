from __future__ import annotations

import pytest

from medic_dev.stack import COMPONENTS


@pytest.fixture(autouse=True)
def all_components_running(stack):
    """A test that kills a component and fails half-way must not break the tests after it."""
    for name in COMPONENTS:
        if stack.pid(name) is None:
            stack.start_component(name)
    if any(stack.pid(name) is None for name in COMPONENTS):
        pytest.fail("a stack component died and could not be restarted")
    yield


@pytest.fixture(scope="module")
def client(stack):
    """A REST client of the stack's api-server, logged in as the admin user."""
    client = stack.client()
    yield client
    client.close()
