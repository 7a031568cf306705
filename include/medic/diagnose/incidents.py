"""Filing claimed failures into incidents: one per (fingerprint, dag_id, task_id) episode.

Each event is filed in its own transaction together with the state change of its outbox
row, so an event is counted in exactly one incident exactly once, whatever crashes around it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medic.capture import outbox
from medic.diagnose.memory import prepare_record

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

_ACTIVE = ("open", "diagnosed", "awaiting_approval", "remediating")

_UPSERT = """
INSERT INTO medic.incidents AS i
    (fingerprint, dag_id, task_id, exception_type, signature, error_message, first_event_id,
     event_count, first_failed_at, last_failed_at)
VALUES (%(fingerprint)s, %(dag_id)s, %(task_id)s, %(exception_type)s, %(signature)s, %(message)s,
        %(event_id)s, 1, %(failed_at)s, %(failed_at)s)
ON CONFLICT (fingerprint, dag_id, task_id)
    WHERE status IN ('open', 'diagnosed', 'awaiting_approval', 'remediating')
DO UPDATE SET event_count = i.event_count + 1,
              first_failed_at = LEAST(i.first_failed_at, EXCLUDED.first_failed_at),
              last_failed_at = GREATEST(i.last_failed_at, EXCLUDED.last_failed_at),
              updated_at = now()
RETURNING id, (xmax = 0) AS created
"""


@dataclass
class FilingResult:
    incident_ids: list[int]
    new_incidents: list[int]
    processed_events: list[int]
    invalid_events: list[int]
    lost_events: list[int]  # claim expired and another run took them; not ours to file


def file_claimed_events(conn: psycopg.Connection, event_ids: list[int], owner: str) -> FilingResult:
    """File each claimed event in its own transaction (one incident lock at a time: no deadlocks
    between concurrent runs). Needs an autocommit connection, or the transactions would nest."""
    if not conn.autocommit:
        raise ValueError("file_claimed_events needs an autocommit connection")
    result = FilingResult([], [], [], [], [])
    claimed = outbox.load_claimed(conn, event_ids, owner)
    seen = {c.event_id for c in claimed}
    result.lost_events = [e for e in event_ids if e not in seen]
    for event in claimed:
        try:
            incident_id, created = _file_one(conn, event, owner, result)
        except _LostLease:
            result.lost_events.append(event.event_id)
            continue
        if incident_id is None:
            continue
        result.processed_events.append(event.event_id)
        if incident_id not in result.incident_ids:
            result.incident_ids.append(incident_id)
        if created:
            result.new_incidents.append(incident_id)
    return result


def _file_one(
    conn: psycopg.Connection, event: outbox.ClaimedEvent, owner: str, result: FilingResult
) -> tuple[int | None, bool]:
    with conn.transaction():
        if event.record is None:
            if outbox.mark_invalid(conn, event.event_id, owner, event.problem or "unreadable"):
                log.error("medic: failure event %s is invalid and was set aside: %s", event.event_id, event.problem)
                result.invalid_events.append(event.event_id)
            return None, False
        record = event.record
        sig = prepare_record(record).signature
        filed = conn.execute(
            _UPSERT,
            {
                "fingerprint": sig.fingerprint,
                "dag_id": record.dag_id,
                "task_id": record.task_id,
                "exception_type": sig.exception_type,
                "signature": sig.text,
                "message": record.error_message[:2000],
                "event_id": event.event_id,
                "failed_at": record.failed_at,
            },
        ).fetchone()
        if filed is None:  # an upsert with RETURNING always answers; a driver that did not is a bug
            raise RuntimeError(f"filing failure event {event.event_id} returned no incident")
        incident_id, created = filed
        if not outbox.finish_event(conn, event.event_id, owner, incident_id):
            # lost the lease between load and now: undo the count with the transaction
            raise _LostLease(event.event_id)
    return incident_id, created


class _LostLease(Exception):
    pass
