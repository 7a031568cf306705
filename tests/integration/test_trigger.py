"""FailureEventTrigger's real run loop against a real PostgreSQL (no triggerer needed)."""

from __future__ import annotations

import asyncio
import time

from medic.capture import outbox
from medic.triggers.watchers import FailureEventTrigger
from tests.integration.helpers import record


async def _next_event(gen, timeout: float):
    return await asyncio.wait_for(gen.__anext__(), timeout)


def _insert(conn, n: int) -> int:
    return outbox.record_failure(conn, record(n), diagnose_retries=False).event_id


def test_serialize_round_trip_holds_no_secret(it_db) -> None:
    trigger = FailureEventTrigger(conn_id=it_db, poll_seconds=7, lease_seconds=30)
    path, kwargs = trigger.serialize()
    assert path == "medic.triggers.watchers.FailureEventTrigger"
    assert kwargs == {"conn_id": it_db, "poll_seconds": 7.0, "lease_seconds": 30, "batch_limit": 1000}
    assert FailureEventTrigger(**kwargs).serialize() == (path, kwargs)


def test_notify_wakes_the_trigger_long_before_the_poll(it_conn, it_db) -> None:
    async def scenario():
        gen = FailureEventTrigger(conn_id=it_db, poll_seconds=60, lease_seconds=30).run()
        waiter = asyncio.ensure_future(_next_event(gen, 20))
        await asyncio.sleep(1.0)  # the trigger is listening now
        started = time.monotonic()
        event_id = await asyncio.to_thread(_insert, it_conn, 1)
        event = await waiter
        elapsed = time.monotonic() - started
        await gen.aclose()
        return event_id, event, elapsed

    event_id, event, elapsed = asyncio.run(scenario())
    assert event.payload["event_ids"] == [event_id]
    assert elapsed < 5  # the NOTIFY path, not the 60 s poll


def test_polling_finds_events_whose_notify_was_lost(it_conn, it_db) -> None:
    it_conn.execute("ALTER TABLE medic.failure_events DISABLE TRIGGER failure_events_notify")
    try:
        ids = [_insert(it_conn, n) for n in range(3)]

        async def scenario():
            gen = FailureEventTrigger(conn_id=it_db, poll_seconds=1, lease_seconds=30).run()
            first = await _next_event(gen, 10)
            await gen.aclose()
            return first

        assert asyncio.run(scenario()).payload["event_ids"] == ids
    finally:
        it_conn.execute("ALTER TABLE medic.failure_events ENABLE TRIGGER failure_events_notify")


def test_trigger_survives_a_database_restart(embedded, it_conn, it_db) -> None:
    async def scenario():
        gen = FailureEventTrigger(conn_id=it_db, poll_seconds=1, lease_seconds=30).run()
        first_id = await asyncio.to_thread(_insert, it_conn, 1)
        first = await _next_event(gen, 10)
        waiter = asyncio.ensure_future(_next_event(gen, 60))
        await asyncio.to_thread(embedded.restart_postgres)
        with embedded.connect_postgres("medic_it", autocommit=True) as fresh:
            second_id = await asyncio.to_thread(_insert, fresh, 2)
        second = await waiter
        await gen.aclose()
        return first_id, first, second_id, second

    first_id, first, second_id, second = asyncio.run(scenario())
    assert first.payload["event_ids"] == [first_id]
    assert second.payload["event_ids"] == [second_id]


def test_runbook_changes_fire_and_an_unchanged_folder_does_not(tmp_path) -> None:
    from medic.triggers.watchers import RunbookChangeTrigger

    (tmp_path / "timeout.md").write_text("---\nerror_class: timeout\n---\nv1")

    async def scenario():
        gen = RunbookChangeTrigger(directory=str(tmp_path), poll_seconds=0.2).run()
        quiet = asyncio.ensure_future(_next_event(gen, 1.0))
        try:
            await quiet
            fired_without_change = True
        except asyncio.TimeoutError:
            fired_without_change = False
        gen = RunbookChangeTrigger(directory=str(tmp_path), poll_seconds=0.2).run()
        waiter = asyncio.ensure_future(_next_event(gen, 5))
        await asyncio.sleep(0.5)
        (tmp_path / "timeout.md").write_text("---\nerror_class: timeout\n---\nv2")
        event = await waiter
        await gen.aclose()
        return fired_without_change, event

    fired_without_change, event = asyncio.run(scenario())
    assert not fired_without_change
    assert len(event.payload["runbooks_digest"]) == 64 and event.payload["directory"] == str(tmp_path)
