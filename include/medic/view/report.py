"""What the incidents view shows: incidents, one incident's story, and headline figures.

Plain queries over medic's tables, typed by pydantic models that are also the view's API
contract. The Airflow side (authentication, which DAGs a user may read) stays in ``medic.view``:
here a caller passes ``readable_dags`` (``None`` = every DAG) and the base path of the UI.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from pydantic import BaseModel, Field

from medic.remediate.remediation import APPROVAL_DAG, APPROVAL_TASK

if TYPE_CHECKING:
    import psycopg

MAX_PAGE = 200
UNDIAGNOSED = "undiagnosed"
STATUSES = (
    "open",
    "diagnosed",
    "awaiting_approval",
    "remediating",
    "resolved",
    "failed",
    "rejected",
    "escalated",
    "expired",
    "superseded",
)


# ---- contract ------------------------------------------------------------------------------------
class Links(BaseModel):
    """Paths in the Airflow UI (under its base path), opened in the top window by the page."""

    task_instance: str
    logs: str
    approval: str | None = None
    diagnose_run: str | None = None


class DiagnosisSummary(BaseModel):
    error_class: str
    action: str
    confidence: float
    source: str
    root_cause: str | None = None


class DecisionSummary(BaseModel):
    route: str | None
    reason: str | None
    decided_at: datetime | None
    decided_by: str | None = Field(description="policy (the automatic route), user, timeout, or None")
    approver: str | None = None
    decision: str | None = Field(default=None, description="apply | reject | escalate | expire")


class RemediationSummary(BaseModel):
    action: str
    status: str
    applied_at: datetime | None
    verified_outcome: str | None
    verified_at: datetime | None
    time_to_fix_seconds: float | None


class IncidentRow(BaseModel):
    id: int
    status: str
    dag_id: str
    task_id: str
    exception_type: str | None
    error: str = Field(description="the first line of the first failure's scrubbed message")
    event_count: int
    first_failed_at: datetime
    last_failed_at: datetime
    diagnosis: DiagnosisSummary | None
    decision: DecisionSummary
    remediation: RemediationSummary | None
    links: Links


class FailureEvent(BaseModel):
    run_id: str
    map_index: int
    try_number: int
    state: str
    source: str
    failed_at: datetime
    links: Links
    retry_decision: dict[str, Any] | None = Field(
        default=None, description="medic's retry policy's decision on this try, in the worker (action, reason)"
    )


class IncidentDetail(IncidentRow):
    error_message: str | None
    signature: str
    fingerprint: str
    diagnosis_detail: dict[str, Any] | None = Field(description="the full Diagnosis contract")
    evidence_neighbours: list[dict[str, Any]] = Field(description="retrieved past incidents and runbooks")
    remediation_params: dict[str, Any] | None
    remediation_result: dict[str, Any] | None
    events: list[FailureEvent]


class IncidentPage(BaseModel):
    items: list[IncidentRow]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class DayCount(BaseModel):
    day: date
    by_class: dict[str, int]


class Summary(BaseModel):
    since: datetime
    until: datetime
    failures_captured: int
    incidents: int
    auto_resolved: int
    auto_resolved_share: float | None = Field(description="auto-resolved incidents / incidents")
    approved: int
    rejected: int
    escalated: int
    expired: int
    awaiting_approval: int
    median_time_to_fix_seconds: float | None
    classes: list[str]
    per_day: list[DayCount]


class Filters(BaseModel):
    status: str | None = None
    error_class: str | None = None
    dag_id: str | None = None


# ---- links ---------------------------------------------------------------------------------------
def run_path(base: str, dag_id: str, run_id: str) -> str:
    """A DAG run's page in the UI; every id is one escaped path segment."""
    return f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def task_instance_path(base: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    path = f"{run_path(base, dag_id, run_id)}/tasks/{quote(task_id, safe='')}"
    return f"{path}/mapped/{map_index}" if map_index >= 0 else path


def _links(base: str, row: dict[str, Any]) -> Links:
    ti = task_instance_path(base, row["dag_id"], row["run_id"], row["task_id"], row["map_index"])
    approval = None
    if row.get("approval_run_id") and row["status"] == "awaiting_approval":
        # the UI's own route for a mapped task's request (its page ignores a ?map_index= query)
        approval = (
            task_instance_path(base, APPROVAL_DAG, row["approval_run_id"], APPROVAL_TASK, row["approval_map_index"])
            + "/required_actions"
        )
    diagnose_run = run_path(base, APPROVAL_DAG, row["diagnose_run_id"]) if row.get("diagnose_run_id") else None
    return Links(
        task_instance=ti,
        logs=f"{ti}?{urlencode({'try_number': row['try_number']})}",
        approval=approval,
        diagnose_run=diagnose_run,
    )


# ---- queries -------------------------------------------------------------------------------------
# The diagnosis an incident was decided on; before the decision, its latest one. The lateral
# part runs only for undecided incidents (a one-time filter), so the join stays a hash join
# over a large history instead of one subquery per incident.
_DIAGNOSIS = """
  LEFT JOIN LATERAL (
        SELECT id FROM medic.diagnoses
         WHERE i.diagnosis_id IS NULL AND incident_id = i.id
         ORDER BY created_at DESC LIMIT 1) latest ON true
  LEFT JOIN medic.diagnoses d ON d.id = coalesce(i.diagnosis_id, latest.id)
"""
_ROWS = (
    """
SELECT i.id, i.status, i.dag_id, i.task_id, i.exception_type, i.error_message, i.signature,
       i.fingerprint, i.event_count, i.first_failed_at, i.last_failed_at, i.route, i.route_reason,
       i.decided_at, i.time_to_fix_seconds, i.approval_run_id, i.approval_map_index,
       e.run_id, e.map_index, e.try_number, e.processed_by AS diagnose_run_id,
       d.error_class, d.action AS diagnosed_action, d.confidence, d.source AS diagnosis_source,
       d.diagnosis, d.neighbours,
       r.action AS remediation_action, r.params, r.decided_by, r.approver, r.decision,
       r.status AS remediation_status, r.result, r.applied_at, r.verified_outcome, r.verified_at
  FROM medic.incidents i
  JOIN medic.failure_events e ON e.id = i.first_event_id
  LEFT JOIN medic.remediations r ON r.incident_id = i.id
"""
    + _DIAGNOSIS
)


def _where(filters: Filters, readable_dags: set[str] | None) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if readable_dags is not None:
        clauses.append("i.dag_id = ANY(%(readable)s)")
        params["readable"] = sorted(readable_dags)
    if filters.status:
        clauses.append("i.status = %(status)s")
        params["status"] = filters.status
    if filters.dag_id:
        clauses.append("i.dag_id = %(dag_id)s")
        params["dag_id"] = filters.dag_id
    if filters.error_class == UNDIAGNOSED:
        clauses.append("d.error_class IS NULL")
    elif filters.error_class:
        clauses.append("d.error_class = %(error_class)s")
        params["error_class"] = filters.error_class
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _fetch(conn: psycopg.Connection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, params, prepare=False)
    names = [c.name for c in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _row(base: str, row: dict[str, Any]) -> IncidentRow:
    diagnosis = None
    if row["error_class"]:
        diagnosis = DiagnosisSummary(
            error_class=row["error_class"],
            action=row["diagnosed_action"],
            confidence=round(float(row["confidence"]), 4),
            source=row["diagnosis_source"],
            root_cause=(row["diagnosis"] or {}).get("root_cause"),
        )
    # A remediation row says who decided; without one, the policy decided the auto and escalate routes.
    decided_by = row["decided_by"] or ("policy" if row["route"] in ("auto", "escalate") else None)
    if decided_by == "auto":
        decided_by = "policy"
    remediation = None
    if row["remediation_action"] and row["decision"] == "apply":
        remediation = RemediationSummary(
            action=row["remediation_action"],
            status=row["remediation_status"],
            applied_at=row["applied_at"],
            verified_outcome=row["verified_outcome"],
            verified_at=row["verified_at"],
            time_to_fix_seconds=row["time_to_fix_seconds"],
        )
    return IncidentRow(
        id=row["id"],
        status=row["status"],
        dag_id=row["dag_id"],
        task_id=row["task_id"],
        exception_type=row["exception_type"],
        error=next(iter((row["error_message"] or "").strip().splitlines()), "")[:300],
        event_count=row["event_count"],
        first_failed_at=row["first_failed_at"],
        last_failed_at=row["last_failed_at"],
        diagnosis=diagnosis,
        decision=DecisionSummary(
            route=row["route"],
            reason=row["route_reason"],
            decided_at=row["decided_at"],
            decided_by=decided_by,
            approver=row["approver"],
            decision=row["decision"],
        ),
        remediation=remediation,
        links=_links(base, row),
    )


def list_incidents(
    conn: psycopg.Connection,
    filters: Filters,
    *,
    limit: int = 25,
    offset: int = 0,
    readable_dags: set[str] | None = None,
    ui_base: str = "",
) -> IncidentPage:
    """Newest first; ``limit`` is capped at ``MAX_PAGE``."""
    limit = max(1, min(limit, MAX_PAGE))
    offset = max(0, offset)
    where, params = _where(filters, readable_dags)
    diagnosis = _DIAGNOSIS if filters.error_class else ""  # counted without it where it cannot matter
    total = _fetch(conn, "SELECT count(*) AS n FROM medic.incidents i" + diagnosis + where, params)[0]["n"]
    rows = _fetch(
        conn,
        _ROWS + where + " ORDER BY i.id DESC LIMIT %(limit)s OFFSET %(offset)s",
        params | {"limit": limit, "offset": offset},
    )
    return IncidentPage(
        items=[_row(ui_base, row) for row in rows],
        total=total,
        limit=limit,
        offset=offset,
        next_offset=offset + limit if offset + limit < total else None,
    )


def _readable_neighbours(
    conn: psycopg.Connection, neighbours: list[dict[str, Any]], readable_dags: set[str] | None
) -> list[dict[str, Any]]:
    """Retrieved past incidents of DAGs the caller may not read are left out (runbooks stay)."""
    if readable_dags is None:
        return neighbours
    keys = [str(n.get("key", "")) for n in neighbours]
    ids = {int(key[len("incident:") :]) for key in keys if key.startswith("incident:") and key[9:].isdigit()}
    allowed = {
        f"incident:{r['id']}"
        for r in _fetch(
            conn,
            "SELECT id FROM medic.incidents WHERE id = ANY(%(ids)s) AND dag_id = ANY(%(readable)s)",
            {"ids": sorted(ids), "readable": sorted(readable_dags)},
        )
    }
    return [n for n in neighbours if not str(n.get("key", "")).startswith("incident:") or n["key"] in allowed]


def incident_detail(
    conn: psycopg.Connection, incident_id: int, *, readable_dags: set[str] | None = None, ui_base: str = ""
) -> IncidentDetail | None:
    """One incident's whole story, or None when it does not exist or its DAG is not readable."""
    where, params = _where(Filters(), readable_dags)
    where = (where + " AND " if where else " WHERE ") + "i.id = %(incident_id)s"
    rows = _fetch(conn, _ROWS + where, params | {"incident_id": incident_id})
    if not rows:
        return None
    row = rows[0]
    events = _fetch(
        conn,
        "SELECT dag_id, task_id, run_id, map_index, try_number, state, source, failed_at,"
        " payload->'retry_decision' AS retry_decision"
        " FROM medic.failure_events WHERE incident_id = %(incident_id)s ORDER BY failed_at DESC, id DESC LIMIT 50",
        {"incident_id": incident_id},
    )
    summary = _row(ui_base, row)
    return IncidentDetail(
        **summary.model_dump(),
        error_message=row["error_message"],
        signature=row["signature"],
        fingerprint=row["fingerprint"],
        diagnosis_detail=row["diagnosis"],
        evidence_neighbours=_readable_neighbours(conn, row["neighbours"] or [], readable_dags),
        remediation_params=row["params"],
        remediation_result=row["result"],
        events=[
            FailureEvent(
                run_id=e["run_id"],
                map_index=e["map_index"],
                try_number=e["try_number"],
                state=e["state"],
                source=e["source"],
                failed_at=e["failed_at"],
                links=_links(ui_base, e),
                retry_decision=e["retry_decision"],
            )
            for e in events
        ],
    )


_FIGURES = """
WITH inc AS (
    SELECT i.*, r.decided_by, r.decision
      FROM medic.incidents i LEFT JOIN medic.remediations r ON r.incident_id = i.id
     WHERE i.first_failed_at >= %(since)s AND i.first_failed_at < %(until)s {readable}
)
SELECT
    (SELECT count(*) FROM medic.failure_events e
      WHERE e.failed_at >= %(since)s AND e.failed_at < %(until)s {readable_e}) AS failures_captured,
    count(*) AS incidents,
    count(*) FILTER (WHERE route = 'auto' AND status = 'resolved') AS auto_resolved,
    count(*) FILTER (WHERE decided_by = 'user' AND decision = 'apply') AS approved,
    count(*) FILTER (WHERE status = 'rejected') AS rejected,
    count(*) FILTER (WHERE status = 'escalated') AS escalated,
    count(*) FILTER (WHERE status = 'expired') AS expired,
    count(*) FILTER (WHERE status = 'awaiting_approval') AS awaiting_approval,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY time_to_fix_seconds)
        FILTER (WHERE status = 'resolved' AND time_to_fix_seconds IS NOT NULL) AS median_time_to_fix_seconds
  FROM inc
"""

_PER_DAY = """
SELECT (i.first_failed_at AT TIME ZONE 'UTC')::date AS day, coalesce(d.error_class, %(undiagnosed)s) AS error_class,
       count(*) AS n
  FROM medic.incidents i {diagnosis}
 WHERE i.first_failed_at >= %(since)s AND i.first_failed_at < %(until)s {readable}
 GROUP BY 1, 2 ORDER BY 1, 2
"""


def summary(
    conn: psycopg.Connection,
    *,
    since: datetime,
    until: datetime,
    readable_dags: set[str] | None = None,
) -> Summary:
    """Headline figures over ``[since, until)``: incidents count by their first failure's time."""
    params: dict[str, Any] = {"since": since, "until": until, "undiagnosed": UNDIAGNOSED}
    readable = readable_e = ""
    if readable_dags is not None:
        params["readable"] = sorted(readable_dags)
        readable, readable_e = "AND i.dag_id = ANY(%(readable)s)", "AND e.dag_id = ANY(%(readable)s)"
    figures = _fetch(conn, _FIGURES.format(readable=readable, readable_e=readable_e), params)[0]
    days: dict[date, dict[str, int]] = {}
    day = since.date()
    while day <= (until - timedelta(microseconds=1)).date():
        days[day] = {}
        day += timedelta(days=1)
    classes: set[str] = set()
    for row in _fetch(conn, _PER_DAY.format(readable=readable, diagnosis=_DIAGNOSIS), params):
        days.setdefault(row["day"], {})[row["error_class"]] = row["n"]
        classes.add(row["error_class"])
    incidents = figures["incidents"]
    median = figures["median_time_to_fix_seconds"]
    return Summary(
        since=since,
        until=until,
        failures_captured=figures["failures_captured"],
        incidents=incidents,
        auto_resolved=figures["auto_resolved"],
        auto_resolved_share=round(figures["auto_resolved"] / incidents, 4) if incidents else None,
        approved=figures["approved"],
        rejected=figures["rejected"],
        escalated=figures["escalated"],
        expired=figures["expired"],
        awaiting_approval=figures["awaiting_approval"],
        median_time_to_fix_seconds=round(float(median), 3) if median is not None else None,
        classes=sorted(classes),
        per_day=[DayCount(day=d, by_class=counts) for d, counts in sorted(days.items())],
    )


def filter_choices(conn: psycopg.Connection, readable_dags: set[str] | None = None) -> dict[str, list[str]]:
    """The values the page offers in its filters: statuses, diagnosed classes, DAGs with incidents."""
    where, params = _where(Filters(), readable_dags)
    dag_rows = _fetch(conn, f"SELECT DISTINCT i.dag_id FROM medic.incidents i{where} ORDER BY 1", params)
    dags = [r["dag_id"] for r in dag_rows]
    class_rows = _fetch(
        conn,
        "SELECT DISTINCT d.error_class FROM medic.incidents i" + _DIAGNOSIS + where + " ORDER BY 1 NULLS LAST",
        params,
    )
    classes = [r["error_class"] for r in class_rows if r["error_class"]]
    return {"status": list(STATUSES), "error_class": [*classes, UNDIAGNOSED], "dag_id": dags}
