"""Closing the loop: a re-run medic started finishes, the incident is resolved or failed,
and only such verified outcomes become knowledge.

``record_run_outcome`` is called by the listener when any task instance finishes for good
(success in the task process; a final failure wherever it is captured). It only touches task
instances medic itself cleared, and only a try later than the one medic was fixing, so
Airflow's own retries and other people's re-runs never count as medic's fixes.
``learn_verified`` embeds verified incidents into the knowledge base (resolved ones support a
fix; failed ones count against it); it runs where the embedder is loaded anyway.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from medic.capture.records import FailureRecord
from medic.contract import AUTO_SAFE_ACTIONS
from medic.diagnose import knowledge
from medic.diagnose.knowledge import Match
from medic.diagnose.memory import prepare_record

if TYPE_CHECKING:
    from datetime import datetime

    import psycopg

    from medic.diagnose.embedding import Embedder

log = logging.getLogger(__name__)

_FINISH_TARGET = """
UPDATE medic.remediation_targets t
   SET outcome = %(outcome)s, outcome_try = %(try_number)s, started_at = %(started_at)s, finished_at = now()
  FROM medic.remediations r
 WHERE t.remediation_id = r.id AND r.status = 'applied' AND t.outcome IS NULL AND t.cleared
   AND t.dag_id = %(dag_id)s AND t.run_id = %(run_id)s AND t.task_id = %(task_id)s AND t.map_index = %(map_index)s
   AND t.failed_try < %(try_number)s
RETURNING r.id, r.incident_id
"""

_CLOSE = """
WITH tally AS (
    SELECT count(*) FILTER (WHERE outcome IS NULL) AS pending,
           count(*) FILTER (WHERE outcome = 'failed') AS failed
      FROM medic.remediation_targets WHERE remediation_id = %(remediation_id)s
), verified AS (
    UPDATE medic.remediations r
       SET verified_outcome = CASE WHEN tally.failed > 0 THEN 'failed' ELSE 'resolved' END, verified_at = now()
      FROM tally
     WHERE r.id = %(remediation_id)s AND r.verified_outcome IS NULL AND tally.pending = 0
    RETURNING r.incident_id, r.verified_outcome
)
UPDATE medic.incidents i
   SET status = v.verified_outcome, resolved_at = now(),
       time_to_fix_seconds = CASE WHEN v.verified_outcome = 'resolved'
                                  THEN extract(epoch FROM now() - i.last_failed_at) END,
       updated_at = now()
  FROM verified v
 WHERE i.id = v.incident_id
RETURNING i.id, i.status, i.time_to_fix_seconds
"""


def record_run_outcome(
    conn: psycopg.Connection,
    *,
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: int,
    try_number: int,
    succeeded: bool,
    started_at: datetime | None = None,
) -> list[dict[str, Any]]:
    """One finished try of a task instance; returns the incidents this closed (usually none)."""
    closed: list[dict[str, Any]] = []
    with conn.transaction():
        touched = conn.execute(
            _FINISH_TARGET,
            {
                "outcome": "resolved" if succeeded else "failed",
                "try_number": try_number,
                "started_at": started_at,
                "dag_id": dag_id,
                "run_id": run_id,
                "task_id": task_id,
                "map_index": map_index,
            },
        ).fetchall()
        for remediation_id, _incident_id in touched:
            for incident_id, status, seconds in conn.execute(_CLOSE, {"remediation_id": remediation_id}).fetchall():
                closed.append({"incident_id": incident_id, "status": status, "time_to_fix_seconds": seconds})
    if closed:  # the remediation runs end in lineage: COMPLETE when resolved, FAIL when not
        # OpenLineage's client (~0.5 s) loads when a fix is verified, not with this module: the
        # listener imports it to write a final failure within its time bound.
        from medic.lineage import events as lineage  # noqa: PLC0415

        lineage.emit_built(
            "verified outcomes", lineage.remediation_verified_events, conn, [c["incident_id"] for c in closed]
        )
    for item in closed:
        log.info(
            "medic: incident %s verified %s by %s/%s/%s#%s",
            item["incident_id"],
            item["status"],
            dag_id,
            run_id,
            task_id,
            try_number,
        )
    return closed


def learn_verified(conn: psycopg.Connection, embedder: Embedder, limit: int = 200) -> int:
    """Enter verified, not yet learned incidents into the knowledge base; returns how many.

    ``conn`` must be autocommit (``knowledge.upsert`` manages its own transactions).
    """
    rows = conn.execute(
        "SELECT i.id, i.dag_id, i.task_id, e.payload, d.error_class, r.action, r.verified_outcome, r.decided_by,"
        " r.id, i.time_to_fix_seconds"
        " FROM medic.incidents i JOIN medic.remediations r ON r.incident_id = i.id"
        " JOIN medic.failure_events e ON e.id = i.first_event_id"
        " JOIN medic.diagnoses d ON d.id = i.diagnosis_id"
        " WHERE r.verified_outcome IS NOT NULL AND i.learned_at IS NULL ORDER BY i.id LIMIT %s",
        (limit,),
    ).fetchall()
    if not rows:
        return 0
    entries = []
    for incident_id, dag_id, task_id, payload, error_class, action, outcome, decided_by, remediation_id, ttf in rows:
        prepared = prepare_record(FailureRecord.model_validate(payload))
        entries.append(
            knowledge.Entry(
                kind="incident",
                source_key=f"incident:{incident_id}",
                text=prepared.embedding_text,
                error_class=error_class,
                action=action,
                auto_safe=action in AUTO_SAFE_ACTIONS,
                outcome=outcome,
                fingerprint=prepared.fingerprint,
                title=f"incident {incident_id}: {dag_id}.{task_id}, {action} {outcome}",
                metadata={"remediation_id": remediation_id, "decided_by": decided_by, "time_to_fix_seconds": ttf},
            )
        )
    knowledge.upsert(conn, embedder, entries)
    conn.execute("UPDATE medic.incidents SET learned_at = now() WHERE id = ANY(%s)", ([row[0] for row in rows],))
    log.info("medic: learned %d verified incident(s)", len(entries))
    return len(entries)


def verified_recurrences(conn: psycopg.Connection, fingerprint: str | None, k: int = 8) -> list[Match]:
    """Incidents with this exact fingerprint whose applied fix was verified, as retrieval matches.

    Read from the incidents themselves, not the knowledge table, so a fix verified a moment ago
    counts before it is embedded. ``fingerprint`` is None for signatures too vague to match.
    """
    if not fingerprint:
        return []
    rows = conn.execute(
        "SELECT i.id, d.error_class, r.action, r.verified_outcome, i.dag_id, i.task_id"
        " FROM medic.incidents i JOIN medic.remediations r ON r.incident_id = i.id"
        " JOIN medic.diagnoses d ON d.id = i.diagnosis_id"
        " WHERE i.fingerprint = %s AND r.decision = 'apply' AND r.verified_outcome IS NOT NULL"
        " ORDER BY r.verified_at DESC LIMIT %s",
        (fingerprint, k),
    ).fetchall()
    return [
        Match(
            0,
            "incident",
            f"incident:{incident_id}",
            error_class,
            action,
            action in AUTO_SAFE_ACTIONS,
            outcome,
            f"incident {incident_id}: {dag_id}.{task_id}, {action} {outcome}",
            "",
            1.0,  # the same normalised failure signature
            "fingerprint",
        )
        for incident_id, error_class, action, outcome, dag_id, task_id in rows
    ]
