"""Versioned migrations for the ``medic`` schema.

Files ``migrations/NNNN_name.sql`` are applied in order, each in its own transaction, under
an advisory lock so that concurrent deployers cannot race. Applied versions and checksums
are kept in ``medic.schema_migrations``; editing an applied file is refused, not re-run.
Migrations run from ``medic migrate`` (or the stack start-up), never from task code.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

_LOCK_KEY = 0x6D65646963  # "medic"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def available() -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("medic").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions: {versions}")
    return found


def applied(conn: psycopg.Connection) -> dict[int, str]:
    (exists,) = conn.execute("SELECT to_regclass('medic.schema_migrations')").fetchone() or (None,)
    if exists is None:
        return {}
    rows = conn.execute("SELECT version, checksum FROM medic.schema_migrations").fetchall()
    return {int(version): str(checksum) for version, checksum in rows}


def migrate(conn: psycopg.Connection) -> list[Migration]:
    """Apply pending migrations; returns those applied now. ``conn`` must not be autocommit."""
    done: list[Migration] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS medic")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS medic.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        have = applied(conn)
        for migration in available():
            if migration.version in have:
                if have[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was edited after it was "
                        "applied; add a new migration instead"
                    )
                continue
            with conn.transaction():
                conn.execute(migration.sql)
                conn.execute(
                    "INSERT INTO medic.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            log.info("applied migration %04d_%s", migration.version, migration.name)
            done.append(migration)
    return done
