"""The steps of ``medic_diagnose`` as plain functions; the DAG file only wires them.

A run treats its asset event(s) as a wake-up: it claims every pending failure event, not
only the ones its events named, because bursts coalesce into one run upstream and would
otherwise strand events until another failure arrives.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from medic import config, db, incidents, outbox

log = logging.getLogger(__name__)


def wakeup_summary(triggering_asset_events: Any) -> dict[str, Any]:
    """How many wake-ups (asset events) and announced event ids started this run; for the log."""
    wakeups, announced = 0, set()
    try:
        for events in triggering_asset_events.values():
            for event in events:
                wakeups += 1
                payload = (getattr(event, "extra", None) or {}).get("payload") or {}
                announced.update(int(i) for i in payload.get("event_ids", []) if str(i).isdigit())
    except Exception as exc:  # malformed events must not stop the run: we claim from the table
        log.warning("medic: could not read the triggering asset events (%s); claiming anyway", exc)
    return {"wakeups": wakeups, "announced": len(announced)}


def claim_failure_events(owner: str) -> list[int]:
    settings = config.OutboxSettings.load()
    with db.connect(settings.conn_id, application_name="medic-diagnose") as conn:
        event_ids = outbox.claim_pending(
            conn,
            owner=owner,
            lease_seconds=settings.claim_lease_seconds,
            max_attempts=settings.max_claim_attempts,
        )
    log.info("medic: claimed %d pending failure event(s)", len(event_ids))
    return event_ids


def file_incidents(event_ids: list[int], owner: str) -> dict[str, Any]:
    if not event_ids:
        return asdict(incidents.FilingResult([], [], [], [], []))
    with db.connect(config.get("conn_id"), application_name="medic-diagnose", autocommit=True) as conn:
        result = incidents.file_claimed_events(conn, event_ids, owner)
    log.info(
        "medic: filed %d event(s) into %d incident(s) (%d new); %d invalid, %d taken over by another run",
        len(result.processed_events),
        len(result.incident_ids),
        len(result.new_incidents),
        len(result.invalid_events),
        len(result.lost_events),
    )
    return asdict(result)
