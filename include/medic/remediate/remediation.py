"""Remediation: turning a decided incident into a plan, an approval request, and a re-run.

Plain Python; the operators in ``medic.remediate.operators`` only call it. Everything a fix does goes
through Airflow's REST API (``medic.airflow_api``) and the allow-list below: the model's
output chooses an action, never code. Idempotency rests on the database: one remediation row
per incident (unique), taken before any call to Airflow, so a retried task, a second answer
or a second diagnose run cannot apply the same incident twice. A task instance that someone
else already re-ran is left alone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from psycopg.types.json import Jsonb

from medic import config

if TYPE_CHECKING:
    import psycopg

    from medic.airflow_api import RemediationApi
    from medic.contract import Diagnosis

log = logging.getLogger(__name__)

#: Actions that re-run the failed task instance when applied. ``escalate`` never re-runs.
RERUN_ACTIONS = frozenset(
    {"retry", "retry_with_backoff", "retry_with_more_resources", "fix_credentials", "fix_code", "fix_data"}
)
#: What "Apply" means per action, as the approver reads it.
APPLY_MEANS = {
    "retry": "clear the failed task instance and re-run it now",
    "retry_with_backoff": "wait the delay (no worker slot held), then clear and re-run",
    "retry_with_more_resources": "after you raised the task's resources, clear and re-run it",
    "fix_credentials": "after you fixed the credential, clear and re-run",
    "fix_code": "after you deployed the fix, clear and re-run (on the latest DAG version if ticked)",
    "fix_data": "after you fixed the data, clear and re-run",
}
APPLY, APPLY_WITH_CHANGES, REJECT, ESCALATE = "Apply", "Apply with changes", "Reject", "Escalate"
OPTIONS = [APPLY, APPLY_WITH_CHANGES, REJECT, ESCALATE]
MAX_DELAY_SECONDS = 86400

Kind = Literal["apply", "reject", "escalate", "expire"]


@dataclass(frozen=True)
class Target:
    """One failed task instance an incident covers: its last failed try in one run."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    failed_try: int


@dataclass
class Plan:
    """What would be done for one incident; travels through XCom as a dict (``asdict``)."""

    incident_id: int
    dag_id: str
    task_id: str
    route: str
    reason: str
    error_class: str
    transience: str
    action: str
    confidence: float
    root_cause: str
    explanation: str
    evidence: list[str]
    delay_seconds: int
    include_downstream: bool
    rerun_on_latest_version: bool
    targets: list[dict[str, Any]]
    similar: list[dict[str, Any]] = field(default_factory=list)
    preview: list[dict[str, Any]] = field(default_factory=list)
    body: str = ""
    #: the incident's OpenLineage subject (``medic.lineage.events.subject``); empty when lineage is off
    lineage: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(**data)


@dataclass(frozen=True)
class Decision:
    kind: Kind
    decided_by: Literal["auto", "user", "timeout"]
    approver: str | None
    delay_seconds: int = 0
    include_downstream: bool = True
    rerun_on_latest_version: bool = False
    note: str = ""

    def params(self) -> dict[str, Any]:
        """The fix's parameters as the remediation row stores them."""
        return {
            "delay_seconds": self.delay_seconds,
            "include_downstream": self.include_downstream,
            "rerun_on_latest_version": self.rerun_on_latest_version,
        }


class RemediationRefused(ValueError):
    """The plan asks for something outside the allow-list; nothing was applied."""


# ---- planning ------------------------------------------------------------------------------


def load_targets(conn: psycopg.Connection, incident_id: int, limit: int | None = None) -> list[Target]:
    """The last failed try per (run, map index) filed into the incident, newest runs first."""
    limit = limit or config.get_int("max_runs_per_remediation")
    rows = conn.execute(
        "SELECT dag_id, run_id, task_id, map_index, try_number FROM ("
        "  SELECT DISTINCT ON (run_id, map_index) dag_id, run_id, task_id, map_index, try_number, failed_at"
        "  FROM medic.failure_events WHERE incident_id = %s AND status = 'processed'"
        "  ORDER BY run_id, map_index, try_number DESC) t ORDER BY failed_at DESC LIMIT %s",
        (incident_id, limit),
    ).fetchall()
    return [Target(*row) for row in rows]


def build_plan(
    incident_id: int,
    dag_id: str,
    task_id: str,
    route: str,
    reason: str,
    diagnosis: Diagnosis,
    targets: list[Target],
    similar: list[dict[str, Any]],
) -> Plan:
    params = diagnosis.action_params
    delay = 0
    if diagnosis.action == "retry_with_backoff":
        delay = int(getattr(params, "delay_seconds", None) or config.get_int("default_backoff_seconds"))
    return Plan(
        incident_id=incident_id,
        dag_id=dag_id,
        task_id=task_id,
        route=route,
        reason=reason,
        error_class=diagnosis.error_class,
        transience=diagnosis.transience,
        action=diagnosis.action,
        confidence=float(diagnosis.confidence),
        root_cause=diagnosis.root_cause,
        explanation=diagnosis.explanation,
        evidence=list(diagnosis.evidence),
        delay_seconds=delay,
        include_downstream=True,
        rerun_on_latest_version=diagnosis.action == "fix_code",
        targets=[asdict(t) for t in targets],
        similar=similar,
    )


def preview(api: RemediationApi, plan: Plan) -> list[dict[str, Any]]:
    """The dry run: which task instances applying the plan would clear (per run)."""
    cleared: list[dict[str, Any]] = []
    for run_id, targets in _targets_by_run(plan.targets).items():
        for ti in api.clear(
            plan.dag_id,
            run_id,
            [(t["task_id"], int(t["map_index"])) for t in targets],
            dry_run=True,
            include_downstream=plan.include_downstream,
            run_on_latest_version=False,
            note="",
        ):
            cleared.append(asdict(ti))
    return cleared


# ---- the approval request -----------------------------------------------------------------

_MD_SPECIAL = set("\\`*_{}[]()#+-.!|<>~&")


def md(text: str) -> str:
    """Text from a log, shown as text: every Markdown and HTML character escaped."""
    return "".join(f"\\{c}" if c in _MD_SPECIAL else c for c in str(text).replace("\n", " "))


#: Where approval requests live: the mapped HITL task of medic_diagnose.
APPROVAL_DAG, APPROVAL_TASK = "medic_diagnose", "approve_remediation"


def approval_subject_suffix(incident_id: int) -> str:
    """How a request's subject ends; how the CLI, bench and tests find an incident's request."""
    return f"(incident {incident_id})"


def approval_subject(plan: Plan) -> str:
    return f"medic: {plan.action} for {plan.dag_id}.{plan.task_id}? {approval_subject_suffix(plan.incident_id)}"


def approval_body(plan: Plan) -> str:
    """The Markdown a person reads before deciding. Every text that came from a log or a model
    is escaped; the body is never rendered as a template (the operator has no template fields)."""
    lines = [
        f"### Incident {plan.incident_id}: `{md(plan.dag_id)}.{md(plan.task_id)}`",
        "",
        f"**Diagnosis:** {md(plan.error_class)} ({md(plan.transience)}), confidence {plan.confidence:.2f}",
        "",
        f"**Proposed fix:** `{plan.action}`: {APPLY_MEANS.get(plan.action, 'record the decision only')}"
        + (f"; delay {plan.delay_seconds} s" if plan.delay_seconds else ""),
        "",
        f"**Why a person decides:** {md(plan.reason)}",
        "",
        f"**Root cause:** {md(plan.root_cause)}",
        "",
        md(plan.explanation),
        "",
        "**Evidence** (quoted from the scrubbed log):",
        "",
    ]
    lines += [f"> {md(line)}" for line in plan.evidence] or ["> (none quoted)"]
    lines += ["", "**Similar past incidents and runbooks:**", ""]
    if plan.similar:
        lines += ["| kind | source | class | action | outcome | similarity |", "|---|---|---|---|---|---|"]
        lines += [
            f"| {md(s.get('kind', ''))} | {md(s.get('key', ''))} | {md(s.get('class') or '')}"
            f" | {md(s.get('action') or '')} | {md(s.get('outcome') or 'n/a')} | {float(s.get('similarity', 0)):.2f} |"
            for s in plan.similar
        ]
    else:
        lines.append("(none)")
    lines += ["", "**Dry run:** applying clears these task instances (only failed ones, this run only):", ""]
    if plan.preview:
        lines += ["| run | task | map index | state now |", "|---|---|---|---|"]
        lines += [
            f"| {md(p['run_id'])} | {md(p['task_id'])} | {p['map_index']} | {md(p.get('state') or '')} |"
            for p in plan.preview
        ]
    else:
        lines.append("nothing: the task instance is no longer failed (re-run by someone else?)")
    lines += [
        "",
        "**Options:** *Apply* does the proposed fix with the values proposed below. *Apply with changes*"
        " uses the values as you edit them. *Reject*: nothing is applied. *Escalate*: nothing is applied and"
        " the incident is handed to a person outside this flow.",
    ]
    return "\n".join(lines)


def approval_params(plan: Plan) -> dict[str, dict[str, Any]]:
    """The editable fields, as Param definitions (the operator wraps them in ``Param``)."""
    return {
        "delay_seconds": {
            "default": plan.delay_seconds,
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_DELAY_SECONDS,
            "description": "Wait this long (no worker slot held) before re-running.",
        },
        "include_downstream": {
            "default": plan.include_downstream,
            "type": "boolean",
            "description": "Also clear the failed and upstream_failed tasks downstream of it.",
        },
        "rerun_on_latest_version": {
            "default": plan.rerun_on_latest_version,
            "type": "boolean",
            "description": "Re-run on the latest DAG version (after a deployed code fix).",
        },
    }


def interpret_response(plan: Plan, chosen: list[str], params_input: dict[str, Any], user: str | None) -> Decision:
    """A person's answer as a decision; edited values are checked, not trusted."""
    if len(chosen) != 1 or chosen[0] not in OPTIONS:
        raise RemediationRefused(f"expected one of {OPTIONS}, got {chosen!r}")
    option = chosen[0]
    if option == REJECT:
        return Decision("reject", "user", user)
    if option == ESCALATE or plan.action not in RERUN_ACTIONS:
        return Decision("escalate", "user", user)
    decision = Decision(
        "apply",
        "user",
        user,
        delay_seconds=plan.delay_seconds,
        include_downstream=plan.include_downstream,
        rerun_on_latest_version=plan.rerun_on_latest_version,
    )
    if option == APPLY_WITH_CHANGES:
        delay = params_input.get("delay_seconds", plan.delay_seconds)
        if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= MAX_DELAY_SECONDS:
            raise RemediationRefused(f"delay_seconds must be an integer 0..{MAX_DELAY_SECONDS}, got {delay!r}")
        flags = {k: params_input.get(k, getattr(plan, k)) for k in ("include_downstream", "rerun_on_latest_version")}
        if not all(isinstance(v, bool) for v in flags.values()):
            raise RemediationRefused(f"include_downstream and rerun_on_latest_version must be booleans: {flags}")
        decision = Decision("apply", "user", user, delay_seconds=delay, **flags)
    return decision


def automatic_decision(plan: Plan) -> Decision:
    return Decision(
        "apply",
        "auto",
        None,
        delay_seconds=plan.delay_seconds,
        include_downstream=plan.include_downstream,
        rerun_on_latest_version=False,
    )


# ---- applying and recording ------------------------------------------------------------------


def _targets_by_run(targets: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_run: dict[str, list[dict[str, Any]]] = {}
    for t in targets:
        by_run.setdefault(t["run_id"], []).append(t)
    return by_run


_TAKE = """
INSERT INTO medic.remediations (incident_id, action, params, decided_by, approver, decision, status)
VALUES (%(incident_id)s, %(action)s, %(params)s, %(decided_by)s, %(approver)s, %(decision)s, %(status)s)
ON CONFLICT (incident_id) DO NOTHING
RETURNING id
"""


def _take(conn: psycopg.Connection, plan: Plan, decision: Decision, status: str) -> int | None:
    """The one remediation row of the incident; None when another decision already holds it."""
    row = conn.execute(
        _TAKE,
        {
            "incident_id": plan.incident_id,
            "action": plan.action,
            "params": Jsonb(decision.params()),
            "decided_by": decision.decided_by,
            "approver": decision.approver,
            "decision": decision.kind,
            "status": status,
        },
    ).fetchone()
    if row is not None:
        return int(row[0])
    # A retry of the same task may find its own unfinished row: carry on with it.
    existing = conn.execute(
        "SELECT id, status, decided_by, approver FROM medic.remediations WHERE incident_id = %s",
        (plan.incident_id,),
    ).fetchone()
    if existing and existing[1] == "pending" and (existing[2], existing[3]) == (decision.decided_by, decision.approver):
        return int(existing[0])
    return None


def record_approval_request(conn: psycopg.Connection, incident_id: int, run_id: str, map_index: int | None) -> None:
    """Where the incident's approval request waits, for the incidents view's link to it."""
    conn.execute(
        "UPDATE medic.incidents SET approval_run_id = %s, approval_map_index = %s, approval_requested_at = now(),"
        " updated_at = now() WHERE id = %s",
        (run_id, map_index, incident_id),
    )


def record_decision(conn: psycopg.Connection, plan: Plan, decision: Decision) -> dict[str, Any]:
    """Reject, escalate or expire: nothing is applied; the incident says what happened."""
    status = {"reject": "rejected", "escalate": "escalated", "expire": "expired"}[decision.kind]
    if decision.kind == "expire" and config.get_bool("escalate_on_timeout"):
        status = "escalated"
    with conn.transaction():
        remediation_id = _take(conn, plan, decision, "recorded")
        if remediation_id is None:
            return {"incident_id": plan.incident_id, "outcome": "already decided"}
        conn.execute(
            "UPDATE medic.remediations SET result = %s WHERE id = %s",
            (
                Jsonb({"note": decision.note or f"{decision.kind} by {decision.approver or decision.decided_by}"}),
                remediation_id,
            ),
        )
        conn.execute(
            "UPDATE medic.incidents SET status = %s, updated_at = now() WHERE id = %s",
            (status, plan.incident_id),
        )
    log.info("medic: incident %s: %s (%s); nothing applied", plan.incident_id, decision.kind, status)
    return {"incident_id": plan.incident_id, "outcome": decision.kind, "status": status, "id": remediation_id}


def apply(conn: psycopg.Connection, api: RemediationApi, plan: Plan, decision: Decision) -> dict[str, Any]:
    """Re-run the incident's failed task instances through the REST API, once.

    ``conn`` must be autocommit: the remediation row is committed before Airflow is called, so a
    crash between the two leaves a pending row that a retry of the same task resumes.
    """
    if decision.kind != "apply":
        raise RemediationRefused(f"apply() got a {decision.kind!r} decision; record_decision() records those")
    if plan.dag_id in config.skipped_dag_ids():
        raise RemediationRefused(f"medic never remediates its own DAG {plan.dag_id}")
    if plan.action not in RERUN_ACTIONS:
        raise RemediationRefused(f"action {plan.action!r} does not re-run anything")
    remediation_id = _take(conn, plan, decision, "pending")
    if remediation_id is None:
        log.info("medic: incident %s already has a remediation; not applying twice", plan.incident_id)
        return {"incident_id": plan.incident_id, "outcome": "already decided"}
    note = f"medic: incident {plan.incident_id}, {plan.action} ({decision.decided_by}"
    note += f" {decision.approver})" if decision.approver else ")"
    cleared: list[dict[str, Any]] = []
    left_alone: list[dict[str, Any]] = []
    for run_id, targets in _targets_by_run(plan.targets).items():
        fresh: list[tuple[str, int]] = []
        for target in targets:
            now = _settled(api, plan.dag_id, target)
            if now["state"] in ("failed", "upstream_failed") and int(now["try_number"]) <= target["failed_try"]:
                fresh.append((target["task_id"], int(target["map_index"])))
            else:  # someone (or this task's earlier attempt) already re-ran it, or marked it
                left_alone.append({**target, "state": now["state"], "try_number": now["try_number"]})
        if fresh:
            done = api.clear(
                plan.dag_id,
                run_id,
                fresh,
                dry_run=False,
                include_downstream=decision.include_downstream,
                run_on_latest_version=decision.rerun_on_latest_version,
                note=note,
            )
            cleared += [asdict(ti) for ti in done]
    mine = {(c["run_id"], c["task_id"], c["map_index"]) for c in cleared}
    # which DAG version each re-run got (the latest one with run_on_latest_version)
    versions = {run_id: api.dag_run(plan.dag_id, run_id)["dag_versions"][-1:] for run_id in {c[0] for c in mine}}
    with conn.transaction():
        for t in plan.targets:
            conn.execute(
                "INSERT INTO medic.remediation_targets (remediation_id, dag_id, run_id, task_id, map_index,"
                " failed_try, cleared) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    remediation_id,
                    t["dag_id"],
                    t["run_id"],
                    t["task_id"],
                    t["map_index"],
                    t["failed_try"],
                    (t["run_id"], t["task_id"], t["map_index"]) in mine,
                ),
            )
        # targets nobody re-runs for medic need no verification
        conn.execute(
            "DELETE FROM medic.remediation_targets WHERE remediation_id = %s AND NOT cleared", (remediation_id,)
        )
        status = "applied" if mine else "skipped"
        conn.execute(
            "UPDATE medic.remediations SET status = %s, applied_at = now(), result = %s, dag_version = %s"
            " WHERE id = %s",
            (
                status,
                Jsonb({"cleared": cleared, "left_alone": left_alone, "note": note}),
                Jsonb(versions) if versions else None,
                remediation_id,
            ),
        )
        conn.execute(
            "UPDATE medic.incidents SET status = %s, updated_at = now() WHERE id = %s AND status IN"
            " ('diagnosed', 'awaiting_approval', 'remediating')",
            ("remediating" if mine else "superseded", plan.incident_id),
        )
    log.info(
        "medic: incident %s: %s applied by %s: cleared %d task instance(s), left %d alone",
        plan.incident_id,
        plan.action,
        decision.approver or decision.decided_by,
        len(cleared),
        len(left_alone),
    )
    return {
        "incident_id": plan.incident_id,
        "outcome": "applied" if mine else "left alone",
        "remediation_id": remediation_id,
        "cleared": cleared,
        "left_alone": left_alone,
        "dag_version": versions,
    }


#: States in which the try medic is fixing has not finished failing yet (the listener captures
#: the failure inside the task process, before Airflow records the final state).
_UNSETTLED = frozenset({None, "running", "queued", "scheduled", "restarting"})


def _settled(api: RemediationApi, dag_id: str, target: dict[str, Any], wait_seconds: float = 60) -> dict[str, Any]:
    """The target's task instance once the try medic is fixing has reached its final state."""
    deadline = time.monotonic() + wait_seconds
    while True:
        now = api.task_instance(dag_id, target["run_id"], target["task_id"], int(target["map_index"]))
        unfinished = now["state"] in _UNSETTLED and int(now["try_number"]) <= target["failed_try"]
        if not unfinished:
            return now
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{dag_id}/{target['run_id']}/{target['task_id']} is still {now['state']} at try"
                f" {now['try_number']}; not clearing a try that has not finished (the task retries)"
            )
        time.sleep(0.5)
