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


def diagnose_incidents(filing: dict[str, Any]) -> dict[str, Any]:
    """Diagnose the incidents this run opened, once each, by the shared failure-memory path.

    Incidents that only gained another event keep their diagnosis. Each diagnosis is stored in
    the same transaction that moves its incident from open to diagnosed, so a retried task
    never diagnoses an incident twice.
    """
    from psycopg.types.json import Jsonb

    from medic import memory
    from medic.embedding import get_embedder
    from medic.knowledge import load_runbooks
    from medic.records import FailureRecord

    incident_ids = list(filing.get("new_incidents") or [])
    if not incident_ids:
        return {"diagnosed": []}
    runbooks = load_runbooks()
    embedder = get_embedder()
    diagnosed: list[dict[str, Any]] = []
    with db.connect(config.get("conn_id"), application_name="medic-diagnose", autocommit=True) as conn:
        memory.ensure_runbooks(conn, embedder, runbooks)
        rows = conn.execute(
            "SELECT i.id, e.payload FROM medic.incidents i JOIN medic.failure_events e ON e.id = i.first_event_id"
            " WHERE i.id = ANY(%s) AND i.status = 'open' ORDER BY i.id",
            (incident_ids,),
        ).fetchall()
        records = [(incident_id, FailureRecord.model_validate(payload)) for incident_id, payload in rows]
        prepared = [memory.prepare_record(r) for _, r in records]
        results = memory.diagnose_prepared(conn, embedder, runbooks, prepared)
        for (incident_id, _), (decision, matches) in zip(records, results, strict=True):
            d = decision.diagnosis
            similar = [
                {
                    "key": m.source_key,
                    "kind": m.kind,
                    "class": m.error_class,
                    "action": m.action,
                    "outcome": m.outcome,
                    "similarity": round(m.similarity, 4),
                    "via": m.via,
                }
                for m in matches
            ]
            with conn.transaction():
                moved = conn.execute(
                    "UPDATE medic.incidents SET status = 'diagnosed', updated_at = now()"
                    " WHERE id = %s AND status = 'open' RETURNING id",
                    (incident_id,),
                ).fetchone()
                if moved is None:
                    continue  # someone else got there first
                conn.execute(
                    "INSERT INTO medic.diagnoses (incident_id, source, embedding_model, error_class, action,"
                    " confidence, automatic, decision_reason, diagnosis, neighbours)"
                    " VALUES (%s, 'retrieval', %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        incident_id,
                        embedder.model_id,
                        d.error_class,
                        d.action,
                        d.confidence,
                        decision.automatic,
                        decision.reason,
                        Jsonb(d.model_dump(mode="json")),
                        Jsonb(similar),
                    ),
                )
            diagnosed.append(
                {
                    "incident_id": incident_id,
                    "class": d.error_class,
                    "action": d.action,
                    "confidence": d.confidence,
                    "automatic": decision.automatic,
                }
            )
            log.info(
                "medic: incident %s diagnosed as %s -> %s (confidence %.2f, %s: %s)",
                incident_id,
                d.error_class,
                d.action,
                d.confidence,
                "automatic" if decision.automatic else "needs a person",
                decision.reason,
            )
    return {"diagnosed": diagnosed}


def refresh_knowledge() -> dict[str, Any]:
    """Embed and upsert the runbooks for the configured model; prune stale and other-model rows."""
    from medic import memory
    from medic.embedding import get_embedder
    from medic.knowledge import load_runbooks

    embedder = get_embedder()
    with db.connect(config.get("conn_id"), application_name="medic-knowledge", autocommit=True) as conn:
        counts = memory.refresh_runbooks(conn, embedder, load_runbooks())
    return {"model": embedder.model_id, "revision": embedder.revision, **counts}
