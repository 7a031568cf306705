"""Connections to medic's PostgreSQL, resolved from an Airflow Connection (never from code).

medic needs psycopg 3 itself (LISTEN/NOTIFY, async for the triggerer, pgvector's adapter)
and strict timeouts (the listener runs inside a failing task), so it builds psycopg
connections from the Connection's fields rather than through a SQLAlchemy engine.
A host that starts with ``/`` is a Unix-socket directory, as libpq reads it.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import psycopg

# Connection extras that are passed on to libpq; anything else in extras is ignored.
_LIBPQ_EXTRAS = {"sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "options"}

_cache: dict[str, dict[str, Any]] = {}
_cache_lock = threading.Lock()


class ConnectionFields(Protocol):
    """The fields of an Airflow Connection that make libpq's arguments (``extra_dejson`` optional)."""

    @property
    def host(self) -> str | None: ...
    @property
    def port(self) -> int | None: ...
    @property
    def login(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def schema(self) -> str | None: ...


def kwargs_from_connection(conn: ConnectionFields) -> dict[str, Any]:
    """libpq keyword arguments from an Airflow Connection object."""
    kwargs: dict[str, Any] = {
        "host": conn.host or None,
        "port": conn.port or None,
        "user": conn.login or None,
        "password": conn.password or None,
        "dbname": conn.schema or "postgres",
    }
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    kwargs.update({k: v for k, v in (extra or {}).items() if k in _LIBPQ_EXTRAS})
    return {k: v for k, v in kwargs.items() if v is not None}


def connection_kwargs(conn_id: str, *, refresh: bool = False) -> dict[str, Any]:
    """Resolve ``conn_id`` through Airflow's secrets chain once per process."""
    with _cache_lock:
        if not refresh and conn_id in _cache:
            return dict(_cache[conn_id])
    # Airflow is imported on first use, not with this module: the ``medic`` command imports it
    # before an installed tool may point the process at its stack's AIRFLOW_HOME.
    from airflow.sdk import BaseHook  # noqa: PLC0415

    kwargs = kwargs_from_connection(BaseHook.get_connection(conn_id))
    with _cache_lock:
        _cache[conn_id] = kwargs
    return dict(kwargs)


async def aconnection_kwargs(conn_id: str) -> dict[str, Any]:
    """Async twin for the triggerer, whose event loop must not block on secrets lookups."""
    from airflow.sdk import BaseHook  # noqa: PLC0415 (as in connection_kwargs)

    return kwargs_from_connection(await BaseHook.aget_connection(conn_id))


def _session_options(statement_timeout_ms: int | None) -> dict[str, Any]:
    if statement_timeout_ms is None:
        return {}
    return {"options": f"-c statement_timeout={int(statement_timeout_ms)}"}


def connect(
    conn_id: str,
    *,
    connect_timeout: int = 10,
    statement_timeout_ms: int | None = None,
    autocommit: bool = False,
    application_name: str = "medic",
) -> psycopg.Connection:
    kwargs = connection_kwargs(conn_id)
    kwargs.setdefault("application_name", application_name)
    kwargs.update(_session_options(statement_timeout_ms))
    return psycopg.connect(connect_timeout=max(1, connect_timeout), autocommit=autocommit, **kwargs)


async def aconnect(
    kwargs: dict[str, Any], *, connect_timeout: int = 10, application_name: str = "medic-trigger"
) -> psycopg.AsyncConnection:
    params = dict(kwargs)
    params.setdefault("application_name", application_name)
    return await psycopg.AsyncConnection.connect(connect_timeout=connect_timeout, autocommit=True, **params)
