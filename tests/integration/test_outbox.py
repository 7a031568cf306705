"""The outbox on a real PostgreSQL: idempotent capture, leases, exactly-once filing."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from medic.capture import outbox
from medic.diagnose import incidents
from medic.migrate import MigrationError, migrate
from tests.integration.helpers import record


def _status(conn, event_id):
    return conn.execute("SELECT status FROM medic.failure_events WHERE id = %s", (event_id,)).fetchone()[0]


def test_same_try_reported_twice_is_one_row_and_the_richer_report_wins(it_conn) -> None:
    first = outbox.record_failure(it_conn, record(source="scheduler", message="from scheduler"), diagnose_retries=False)
    richer = outbox.record_failure(it_conn, record(source="task", message="from task"), diagnose_retries=False)
    poorer = outbox.record_failure(it_conn, record(source="api-server", message="from api"), diagnose_retries=False)
    it_conn.commit()
    assert first.inserted and first.event_id == richer.event_id and not richer.inserted
    assert poorer.event_id is None
    rows = it_conn.execute("SELECT source, payload->>'error_message' FROM medic.failure_events").fetchall()
    assert rows == [("task", "from task")]


def test_retrying_tries_are_recorded_but_not_pending_unless_configured(it_conn) -> None:
    kept = outbox.record_failure(it_conn, record(1, will_retry=True), diagnose_retries=False)
    diagnosed = outbox.record_failure(it_conn, record(2, will_retry=True), diagnose_retries=True)
    it_conn.commit()
    assert _status(it_conn, kept.event_id) == "retrying"
    assert _status(it_conn, diagnosed.event_id) == "pending"


def test_notify_is_sent_on_commit_only(embedded, it_conn, it_db) -> None:
    with embedded.connect_postgres("medic_it", autocommit=True) as listener:
        listener.execute("LISTEN medic_failure_events")
        with it_conn.transaction():
            event = outbox.record_failure(it_conn, record(), diagnose_retries=False)
            assert list(listener.notifies(timeout=0.5, stop_after=1)) == []  # not committed yet
        notes = list(listener.notifies(timeout=5, stop_after=1))
    assert [n.payload for n in notes] == [str(event.event_id)]


async def _signal(embedded, lease: int) -> list[int]:
    async with await psycopg.AsyncConnection.connect(
        host=str(embedded.pg_socket_dir), user="postgres", dbname="medic_it", autocommit=True
    ) as conn:
        return await outbox.signal_pending(conn, lease_seconds=lease)


def test_signal_lease_announces_once_then_again_after_expiry(embedded, it_conn) -> None:
    import asyncio

    ids = [outbox.record_failure(it_conn, record(n), diagnose_retries=False).event_id for n in range(3)]
    it_conn.commit()
    assert asyncio.run(_signal(embedded, 1)) == ids
    assert asyncio.run(_signal(embedded, 1)) == []  # lease holds
    time.sleep(1.2)
    assert asyncio.run(_signal(embedded, 1)) == ids  # the wake-up was lost: announce again


def test_concurrent_claimers_get_disjoint_sets_and_every_event_is_filed_once(embedded, it_conn) -> None:
    for n in range(40):
        outbox.record_failure(it_conn, record(n, task_id=f"t{n % 4}"), diagnose_retries=False)
    it_conn.commit()
    claims: dict[str, list[int]] = {}

    def run(owner: str) -> None:
        with embedded.connect_postgres("medic_it", autocommit=True) as conn:
            ids = outbox.claim_pending(conn, owner=owner, lease_seconds=60, max_attempts=5, limit=15)
            claims[owner] = ids
            incidents.file_claimed_events(conn, ids, owner)

    threads = [threading.Thread(target=run, args=(f"run-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for ids in claims.values() for i in ids]
    assert len(everything) == len(set(everything)) == 40
    assert it_conn.execute("SELECT count(*) FROM medic.failure_events WHERE status='processed'").fetchone()[0] == 40
    counts = it_conn.execute("SELECT task_id, event_count FROM medic.incidents ORDER BY task_id").fetchall()
    assert counts == [("t0", 10), ("t1", 10), ("t2", 10), ("t3", 10)]


def test_expired_claim_is_taken_over_and_the_old_owner_cannot_finish(embedded, it_conn) -> None:
    event_id = outbox.record_failure(it_conn, record(), diagnose_retries=False).event_id
    it_conn.commit()
    assert outbox.claim_pending(it_conn, owner="crashed", lease_seconds=1, max_attempts=5) == [event_id]
    assert outbox.claim_pending(it_conn, owner="other", lease_seconds=60, max_attempts=5) == []
    time.sleep(1.2)
    assert outbox.claim_pending(it_conn, owner="other", lease_seconds=60, max_attempts=5) == [event_id]
    late = incidents.file_claimed_events(it_conn, [event_id], "crashed")
    assert late.lost_events == [event_id] and late.processed_events == []
    done = incidents.file_claimed_events(it_conn, [event_id], "other")
    assert done.processed_events == [event_id]
    assert it_conn.execute("SELECT sum(event_count) FROM medic.incidents").fetchone()[0] == 1


def test_same_owner_retry_reclaims_its_own_rows(it_conn) -> None:
    event_id = outbox.record_failure(it_conn, record(), diagnose_retries=False).event_id
    it_conn.commit()
    assert outbox.claim_pending(it_conn, owner="run-1", lease_seconds=300, max_attempts=5) == [event_id]
    assert outbox.claim_pending(it_conn, owner="run-1", lease_seconds=300, max_attempts=5) == [event_id]


def test_malformed_payload_is_set_aside_with_a_reason_and_others_go_on(it_conn) -> None:
    good = outbox.record_failure(it_conn, record(), diagnose_retries=False).event_id
    bad = it_conn.execute(
        "INSERT INTO medic.failure_events (dag_id, run_id, task_id, try_number, state, source, payload, failed_at)"
        " VALUES ('x', 'r', 't', 1, 'failed', 'external', '{\"try_number\": \"many\"}', now()) RETURNING id"
    ).fetchone()[0]
    it_conn.commit()
    ids = outbox.claim_pending(it_conn, owner="run", lease_seconds=60, max_attempts=5)
    result = incidents.file_claimed_events(it_conn, ids, "run")
    assert result.invalid_events == [bad] and result.processed_events == [good]
    status, error = it_conn.execute("SELECT status, error FROM medic.failure_events WHERE id=%s", (bad,)).fetchone()
    assert status == "invalid" and "malformed failure record" in error and "dag_id" in error


def test_poison_row_is_dead_lettered_after_max_claims(it_conn) -> None:
    event_id = outbox.record_failure(it_conn, record(), diagnose_retries=False).event_id
    it_conn.commit()
    for attempt in range(3):
        assert outbox.claim_pending(it_conn, owner=f"crash-{attempt}", lease_seconds=0, max_attempts=3) == [event_id]
        time.sleep(0.05)
    assert outbox.claim_pending(it_conn, owner="next", lease_seconds=60, max_attempts=3) == []
    status, error = it_conn.execute("SELECT status, error FROM medic.failure_events").fetchone()
    assert status == "invalid" and "claimed 3 times" in error


def test_incidents_group_by_fingerprint_dag_and_task_and_reopen_after_resolution(it_conn) -> None:
    for n in range(3):
        outbox.record_failure(it_conn, record(n, message=f"refused by 10.0.0.{n}:5432"), diagnose_retries=False)
    outbox.record_failure(it_conn, record(9, exc="KeyError", message="'customer_id'"), diagnose_retries=False)
    it_conn.commit()
    ids = outbox.claim_pending(it_conn, owner="a", lease_seconds=60, max_attempts=5)
    result = incidents.file_claimed_events(it_conn, ids, "a")
    assert len(result.new_incidents) == 2
    it_conn.execute("UPDATE medic.incidents SET status = 'resolved'")
    outbox.record_failure(it_conn, record(10, message="refused by 10.0.0.7:5432"), diagnose_retries=False)
    it_conn.commit()
    again = incidents.file_claimed_events(
        it_conn, outbox.claim_pending(it_conn, owner="b", lease_seconds=60, max_attempts=5), "b"
    )
    assert len(again.new_incidents) == 1  # a new episode, not the resolved one


def test_migrations_are_idempotent_and_edits_are_refused(embedded, it_db, monkeypatch) -> None:
    with embedded.connect_postgres("medic_it") as conn:  # migrate() wants its own transaction
        assert migrate(conn) == []
        conn.execute("UPDATE medic.schema_migrations SET checksum = 'edited' WHERE version = 1")
        conn.commit()
        with pytest.raises(MigrationError, match="edited after it was applied"):
            migrate(conn)
        conn.rollback()
        from medic.migrate import available

        conn.execute("UPDATE medic.schema_migrations SET checksum = %s WHERE version = 1", (available()[0].checksum,))
        conn.commit()


def test_manual_failures_are_recorded_but_never_pending(it_conn) -> None:
    manual = record(source="api-server").model_copy(update={"manually_failed": True})
    event = outbox.record_failure(it_conn, manual, diagnose_retries=True)
    assert _status(it_conn, event.event_id) == "manual"
    assert outbox.claim_pending(it_conn, owner="run", lease_seconds=60, max_attempts=5) == []


@pytest.mark.parametrize("manual_first", [True, False])
def test_a_manual_mark_wins_in_either_order_and_the_richer_evidence_stays(it_conn, manual_first) -> None:
    manual = record(source="api-server", message="manually set").model_copy(update={"manually_failed": True})
    task = record(source="task", message="the real exception")
    for report in [manual, task] if manual_first else [task, manual]:
        outbox.record_failure(it_conn, report, diagnose_retries=False)
    status, source, message = it_conn.execute(
        "SELECT status, source, payload->>'error_message' FROM medic.failure_events"
    ).fetchone()
    assert (status, source, message) == ("manual", "task", "the real exception")


def test_an_incident_carries_the_fingerprint_retrieval_matches_on(it_conn) -> None:
    from medic.diagnose.memory import prepare_record

    failure = record(message="could not connect to 10.0.0.5:5432", exc="psycopg.OperationalError")
    outbox.record_failure(it_conn, failure, diagnose_retries=False)
    ids = outbox.claim_pending(it_conn, owner="run", lease_seconds=60, max_attempts=5)
    incidents.file_claimed_events(it_conn, ids, "run")
    (stored,) = it_conn.execute("SELECT fingerprint FROM medic.incidents").fetchone()
    assert stored == prepare_record(failure).fingerprint  # one derivation, not two that may drift
