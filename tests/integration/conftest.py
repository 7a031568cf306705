"""The integration tier: medic's code against the real embedded PostgreSQL (pgvector), no Airflow.

The tests use a database of their own (``medic_it``) on the session's server, so that a run
with the e2e tier never races the stack's trigger and diagnose DAG for rows in ``medic``.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    import psycopg

    from medic_dev.stack import Stack

IT_CONN_ID = "medic_it_db"
IT_DATABASE = "medic_it"


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


@pytest.fixture
def kb_conn(embedded: Stack, it_db: str) -> Iterator[psycopg.Connection]:
    """A connection to the integration database with an empty knowledge table."""
    with embedded.connect_postgres(IT_DATABASE) as conn:
        conn.execute("TRUNCATE medic.knowledge RESTART IDENTITY")
        conn.commit()
        yield conn
