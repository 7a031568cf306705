"""FailureEventTrigger: turns rows of the failure outbox into asset events.

It runs in the triggerer, which cannot import DAG-bundle code (Airflow ADR 0005), so it lives
in the installed ``medic`` package. It LISTENs on the outbox channel and also polls, so a lost
NOTIFY (connection drop, restart) delays an event by at most one poll interval. Each batch it
announces is leased; an announcement whose asset event never became a DAG run (triggerer
killed mid-stream) expires and is made again. The kwargs hold only a connection id, never a
password: credentials are resolved at run time through Airflow's secrets chain.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from medic import config, db
from medic.capture import outbox
from medic.diagnose.knowledge import runbook_dir

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

CHANNEL = "medic_failure_events"


class FailureEventTrigger(BaseEventTrigger):
    """Fires one asset event per batch of newly pending failure events (a wake-up signal)."""

    def __init__(
        self,
        conn_id: str | None = None,
        poll_seconds: float | None = None,
        lease_seconds: int | None = None,
        batch_limit: int = 1000,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id or config.get("conn_id")
        self.poll_seconds = float(
            poll_seconds if poll_seconds is not None else config.get_float("trigger_poll_seconds")
        )
        self.lease_seconds = int(lease_seconds if lease_seconds is not None else config.get_int("signal_lease_seconds"))
        self.batch_limit = int(batch_limit)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "poll_seconds": self.poll_seconds,
                "lease_seconds": self.lease_seconds,
                "batch_limit": self.batch_limit,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        backoff = 1.0
        while True:
            try:
                params = await db.aconnection_kwargs(self.conn_id)
                async with await db.aconnect(params) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.log.info("medic: watching %s on connection %r", CHANNEL, self.conn_id)
                    backoff = 1.0
                    while True:
                        event_ids = await outbox.signal_pending(
                            conn, lease_seconds=self.lease_seconds, limit=self.batch_limit
                        )
                        if event_ids:
                            self.log.info("medic: %d failure event(s) pending: %s", len(event_ids), _preview(event_ids))
                            yield TriggerEvent(
                                {
                                    "event_ids": event_ids,
                                    "count": len(event_ids),
                                    "signalled_at": datetime.now(timezone.utc).isoformat(),
                                }
                            )
                            continue  # more may be waiting beyond batch_limit
                        # Wait for a NOTIFY (or poll): any notification means "look again".
                        async for _ in conn.notifies(timeout=self.poll_seconds, stop_after=1):
                            pass
            except (psycopg.Error, OSError) as exc:
                self.log.warning(
                    "medic: outbox connection problem (%s: %s); retrying in %.0fs",
                    type(exc).__name__,
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)


def _preview(ids: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, ids[:limit]))
    return shown + (f", ... (+{len(ids) - limit})" if len(ids) > limit else "")


def runbook_digest(directory: str) -> str:
    """A digest of the runbook folder's files (names, sizes, contents): changes when a runbook does."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).glob("*.md")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class RunbookChangeTrigger(BaseEventTrigger):
    """Fires when the runbook folder changes, so the knowledge asset changes with its runbooks.

    The first look only takes a baseline (runbooks are seeded on first use and daily anyway);
    every later change fires one event carrying the new digest.
    """

    def __init__(self, directory: str | None = None, poll_seconds: float | None = None) -> None:
        super().__init__()
        self.directory = directory or config.get("runbooks_path") or None
        self.poll_seconds = float(
            poll_seconds if poll_seconds is not None else config.get_float("runbook_poll_seconds")
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"directory": self.directory, "poll_seconds": self.poll_seconds},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        directory = self.directory or str(runbook_dir())
        seen = await asyncio.to_thread(runbook_digest, directory)
        self.log.info("medic: watching runbooks in %s", directory)
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                current = await asyncio.to_thread(runbook_digest, directory)
            except OSError as exc:
                self.log.warning("medic: cannot read runbooks in %s: %s", directory, exc)
                continue
            if current != seen:
                seen = current
                self.log.info("medic: runbooks changed in %s", directory)
                yield TriggerEvent({"runbooks_digest": current, "directory": directory})


class VerifiedOutcomeTrigger(BaseEventTrigger):
    """Fires when a fix medic applied is verified and not yet learned: the knowledge asset changes.

    The verified outcome is written by the listener inside someone else's task, which cannot
    emit asset events; this watcher turns it into one, so ``medic_knowledge_refresh`` embeds it.
    It fires once per new verified remediation (a high-water mark of remediation ids); an
    outcome a failed refresh did not learn is picked up by the next one or the daily run.
    """

    def __init__(self, conn_id: str | None = None, poll_seconds: float | None = None) -> None:
        super().__init__()
        self.conn_id = conn_id or config.get("conn_id")
        self.poll_seconds = float(
            poll_seconds if poll_seconds is not None else config.get_float("trigger_poll_seconds")
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"conn_id": self.conn_id, "poll_seconds": self.poll_seconds},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        seen = 0
        backoff = 1.0
        while True:
            try:
                params = await db.aconnection_kwargs(self.conn_id)
                async with await db.aconnect(params, application_name="medic-learn-watch") as conn:
                    backoff = 1.0
                    while True:
                        cursor = await conn.execute(
                            "SELECT coalesce(max(r.id), 0), count(*) FROM medic.remediations r"
                            " JOIN medic.incidents i ON i.id = r.incident_id"
                            " WHERE r.verified_outcome IS NOT NULL AND i.learned_at IS NULL"
                        )
                        newest, unlearned = await cursor.fetchone() or (0, 0)  # aggregates: always a row
                        if unlearned and newest > seen:
                            seen = newest
                            self.log.info("medic: %d verified outcome(s) to learn", unlearned)
                            yield TriggerEvent({"verified_unlearned": unlearned, "newest_remediation": newest})
                        await asyncio.sleep(self.poll_seconds)
            except (psycopg.Error, OSError) as exc:
                self.log.warning(
                    "medic: verified-outcome watcher: %s: %s; retrying in %.0fs", type(exc).__name__, exc, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
