"""The failure outbox: idempotent capture, the trigger's signal lease, the diagnose run's claim.

Three steps move a row, each guarded by the row's own state so that a process killed at any
point loses nothing and repeats nothing:

1. ``record_failure``: insert on the natural key (dag, run, task, map index, try). A repeated
   report of the same try only enriches a row that nobody has claimed yet.
2. ``signal_pending`` (the trigger): mark pending rows as announced, with a lease. The asset
   event that follows is only a wake-up; if it is lost (triggerer killed), the lease expires
   and the rows are announced again.
3. ``claim_pending`` / ``finish_event`` (medic_diagnose): a run takes every pending row, not
   just the ones its asset event named (bursts coalesce upstream), under a lease; a row is
   finished once, by its current owner, in the same transaction that files it to an incident.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb
from pydantic import ValidationError

from medic.capture.records import SOURCE_RANK, FailureRecord

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

_INSERT = """
INSERT INTO medic.failure_events AS fe
    (dag_id, run_id, task_id, map_index, try_number, state, will_retry, source, source_rank,
     exception_type, payload, status, failed_at)
VALUES (%(dag_id)s, %(run_id)s, %(task_id)s, %(map_index)s, %(try_number)s, %(state)s,
        %(will_retry)s, %(source)s, %(source_rank)s, %(exception_type)s, %(payload)s,
        %(status)s, %(failed_at)s)
ON CONFLICT ON CONSTRAINT failure_events_natural_key DO UPDATE
    SET payload = CASE WHEN fe.source_rank < EXCLUDED.source_rank THEN EXCLUDED.payload ELSE fe.payload END,
        source = CASE WHEN fe.source_rank < EXCLUDED.source_rank THEN EXCLUDED.source ELSE fe.source END,
        exception_type = CASE WHEN fe.source_rank < EXCLUDED.source_rank
                              THEN COALESCE(EXCLUDED.exception_type, fe.exception_type)
                              ELSE fe.exception_type END,
        source_rank = GREATEST(fe.source_rank, EXCLUDED.source_rank),
        -- a person's decision wins whichever report arrives first
        status = CASE WHEN 'manual' IN (fe.status, EXCLUDED.status) THEN 'manual' ELSE fe.status END,
        updated_at = now()
    WHERE (fe.source_rank < EXCLUDED.source_rank OR EXCLUDED.status = 'manual')
          AND fe.claimed_at IS NULL AND fe.status IN ('pending', 'retrying', 'manual')
RETURNING id, (xmax = 0) AS inserted
"""


@dataclass(frozen=True)
class Captured:
    event_id: int | None  # None: an equal or richer report of this try was already stored
    inserted: bool


def record_failure(conn: psycopg.Connection, record: FailureRecord, *, diagnose_retries: bool) -> Captured:
    """Store one failed try; NOTIFY fires on commit (database trigger) for pending rows."""
    if record.manually_failed:
        status = "manual"
    elif record.will_retry and not diagnose_retries:
        status = "retrying"
    else:
        status = "pending"
    params: dict[str, Any] = {
        "dag_id": record.dag_id,
        "run_id": record.run_id,
        "task_id": record.task_id,
        "map_index": record.map_index,
        "try_number": record.try_number,
        "state": record.state,
        "will_retry": record.will_retry,
        "source": record.source,
        "source_rank": SOURCE_RANK.get(record.source, 0),
        "exception_type": record.exception_type,
        "payload": Jsonb(record.model_dump(mode="json")),
        "status": status,
        "failed_at": record.failed_at,
    }
    row = conn.execute(_INSERT, params).fetchone()
    if row is None:
        return Captured(None, False)
    return Captured(int(row[0]), bool(row[1]))


_SIGNAL = """
UPDATE medic.failure_events SET signalled_at = now(),
       signal_expires_at = now() + make_interval(secs => %(lease)s), signal_count = signal_count + 1
WHERE id IN (
    SELECT id FROM medic.failure_events
    WHERE status = 'pending'
      AND (signal_expires_at IS NULL OR signal_expires_at < now())
      AND (claim_expires_at IS NULL OR claim_expires_at < now())
    ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING id
"""


async def signal_pending(conn: psycopg.AsyncConnection, *, lease_seconds: int, limit: int = 1000) -> list[int]:
    """Announce pending rows that no live lease covers; returns their ids (the wake-up)."""
    async with conn.transaction():
        cursor = await conn.execute(_SIGNAL, {"lease": lease_seconds, "limit": limit})
        rows = await cursor.fetchall()
    return sorted(int(r[0]) for r in rows)


_CLAIM = """
UPDATE medic.failure_events SET claimed_at = now(), claim_owner = %(owner)s,
       claim_expires_at = now() + make_interval(secs => %(lease)s),
       claim_attempts = claim_attempts + 1, updated_at = now()
WHERE id IN (
    SELECT id FROM medic.failure_events
    WHERE status = 'pending'
      AND (claim_expires_at IS NULL OR claim_expires_at < now() OR claim_owner = %(owner)s)
    ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING id
"""

_DEAD_LETTER = """
UPDATE medic.failure_events SET status = 'invalid', updated_at = now(),
       error = format('claimed %%s times without being processed (last owner %%s)',
                      claim_attempts, claim_owner)
WHERE status = 'pending' AND claim_attempts >= %(max_attempts)s
  AND claim_expires_at < now()
RETURNING id
"""


def claim_pending(
    conn: psycopg.Connection, *, owner: str, lease_seconds: int, max_attempts: int, limit: int = 1000
) -> list[int]:
    """Take every pending row that no live claim covers. Rows that keep failing are
    dead-lettered first, so one poison row cannot block the loop."""
    with conn.transaction():
        dead = conn.execute(_DEAD_LETTER, {"max_attempts": max_attempts}).fetchall()
        for (event_id,) in dead:
            log.error("medic: failure event %s dead-lettered after %s claims", event_id, max_attempts)
        rows = conn.execute(_CLAIM, {"owner": owner, "lease": lease_seconds, "limit": limit}).fetchall()
    return sorted(int(r[0]) for r in rows)


@dataclass(frozen=True)
class ClaimedEvent:
    event_id: int
    record: FailureRecord | None
    problem: str | None  # why the payload could not be read


def load_claimed(conn: psycopg.Connection, event_ids: list[int], owner: str) -> list[ClaimedEvent]:
    """The rows this owner still holds, with payloads validated (a bad row is reported, not raised)."""
    rows = conn.execute(
        "SELECT id, payload FROM medic.failure_events WHERE id = ANY(%s) AND claim_owner = %s "
        "AND status = 'pending' ORDER BY id",
        (event_ids, owner),
    ).fetchall()
    claimed = []
    for event_id, payload in rows:
        try:
            claimed.append(ClaimedEvent(int(event_id), FailureRecord.model_validate(payload), None))
        except (ValidationError, TypeError, ValueError) as exc:
            claimed.append(ClaimedEvent(int(event_id), None, _describe(exc)))
    return claimed


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[:3]
        fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in first)
        return f"malformed failure record ({exc.error_count()} errors): {fields}"
    return f"malformed failure record: {type(exc).__name__}: {exc}"


def mark_invalid(conn: psycopg.Connection, event_id: int, owner: str, reason: str) -> bool:
    row = conn.execute(
        "UPDATE medic.failure_events SET status = 'invalid', error = %s, processed_at = now(),"
        " processed_by = %s, updated_at = now() WHERE id = %s AND claim_owner = %s AND status = 'pending'"
        " RETURNING id",
        (reason[:2000], owner, event_id, owner),
    ).fetchone()
    return row is not None


def finish_event(conn: psycopg.Connection, event_id: int, owner: str, incident_id: int) -> bool:
    """Mark one claimed row processed; False if this owner lost it (lease expired, taken over)."""
    row = conn.execute(
        "UPDATE medic.failure_events SET status = 'processed', processed_at = now(), processed_by = %s,"
        " incident_id = %s, updated_at = now()"
        " WHERE id = %s AND claim_owner = %s AND status = 'pending' RETURNING id",
        (owner, incident_id, event_id, owner),
    ).fetchone()
    return row is not None
