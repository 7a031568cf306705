"""The unit tier: pure functions and files, no database and no processes.

A unit test that asks for the embedded PostgreSQL or the stack fails at once with where it
belongs, instead of quietly starting a server (and making the fastest tier the slowest).
"""

from __future__ import annotations

import pytest

_ELSEWHERE = "unit tests run without a database or processes: move this test to tests/integration or tests/e2e"


@pytest.fixture(scope="session")
def embedded() -> None:
    """Overrides tests/conftest.py's embedded PostgreSQL for this tier: refused."""
    pytest.fail(_ELSEWHERE, pytrace=False)


@pytest.fixture(scope="session")
def stack_home() -> None:
    """Overrides tests/conftest.py's stack home for this tier: refused."""
    pytest.fail(_ELSEWHERE, pytrace=False)
