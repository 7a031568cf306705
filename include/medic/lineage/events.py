"""OpenLineage for medic's work, emitted through Airflow's OpenLineage provider.

An incident's story is three jobs in the deployment's OpenLineage namespace, each run carrying
a ParentRunFacet that names the failed task's own OpenLineage run (job ``<dag_id>.<task_id>``,
run id computed exactly as the provider computes it), so Marquez shows what medic concluded,
who decided and what was done, on the run it was done to:

- ``medic.diagnose``: one COMPLETE event per decided incident: ``medic_failure`` (the scrubbed
  failure), ``medic_diagnosis`` (class, action, confidence, model, prompt version, similar
  incidents) and ``medic_decision`` (the policy's route). Reads the knowledge base, writes the
  diagnoses.
- ``medic.approve``: START when a person is asked (``medic_approval``: assignees, options, the
  dry run), COMPLETE with their answer (``medic_decision``: who, when, which option, params),
  ABORT when nobody answered in time.
- ``medic.remediate``: START when the fix is applied (``medic_remediation``: what was cleared),
  COMPLETE or FAIL when the re-run's outcome is verified, ABORT when someone else re-ran the
  task first. Writes the remediation log; a verified outcome also feeds the knowledge base.

Run ids are UUIDv5 of the incident's random ``lineage_key`` and the job, so every process that
touches the incident (diagnose run, approval task, the listener that verifies) names the same
run without asking anyone. Facet schemas are in ``schemas/``. Everything in an event
comes from scrubbed records, and the provider's adapter redacts what Airflow's masker knows.
Emitting never raises: lineage must not fail a diagnosis or a fix.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attr
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import RunFacet, job_type_job, parent_run
from openlineage.client.serde import Serde

from medic.capture.records import FailureRecord
from medic.remediate import remediation

if TYPE_CHECKING:
    import psycopg
    from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter

    from medic.contract import Diagnosis

log = logging.getLogger(__name__)

SCHEMA_BASE = "https://airflow-medic.github.io/spec/facets/1-0-0/"
PRODUCER = "https://github.com/airflow-medic/airflow-medic"
DIAGNOSE_JOB = "medic.diagnose"
APPROVE_JOB = "medic.approve"
REMEDIATE_JOB = "medic.remediate"
JOB_TYPES = {DIAGNOSE_JOB: "DIAGNOSIS", APPROVE_JOB: "APPROVAL", REMEDIATE_JOB: "REMEDIATION"}
#: medic's tables as OpenLineage datasets (``<database>.<schema>.<table>``)
KNOWLEDGE_TABLE, DIAGNOSES_TABLE, REMEDIATIONS_TABLE = "medic.knowledge", "medic.diagnoses", "medic.remediations"

#: An incident's lineage subject (see ``subject``): plain JSON data that travels with its plan.
Subject = dict[str, Any]
#: What builds the event(s) that ``emit_built`` sends.
Builder = Callable[..., "RunEvent | list[RunEvent]"]


def _schema(name: str) -> str:
    return f"{SCHEMA_BASE}{name}.json#/$defs/{name}"


@attr.define
class MedicFailureRunFacet(RunFacet):
    dagId: str
    taskId: str
    runId: str
    mapIndex: int
    tryNumber: int
    exceptionType: str | None
    errorMessage: str
    fingerprint: str
    incidentId: int
    eventCount: int

    @staticmethod
    def _get_schema() -> str:
        return _schema("MedicFailureRunFacet")


@attr.define
class MedicDiagnosisRunFacet(RunFacet):
    errorClass: str
    transience: str
    action: str
    confidence: float
    automatic: bool
    route: str
    decisionReason: str
    source: str
    model: str | None
    embeddingModel: str | None
    promptVersion: str | None
    rootCause: str
    evidence: list[str]
    similar: list[dict[str, Any]]

    @staticmethod
    def _get_schema() -> str:
        return _schema("MedicDiagnosisRunFacet")


@attr.define
class MedicDecisionRunFacet(RunFacet):
    incidentId: int
    decidedBy: str  # policy | person | timeout
    user: str | None
    decidedAt: str
    decision: str  # apply | approval | reject | escalate | expire
    option: str | None
    params: dict[str, Any]
    note: str

    @staticmethod
    def _get_schema() -> str:
        return _schema("MedicDecisionRunFacet")


@attr.define
class MedicApprovalRunFacet(RunFacet):
    incidentId: int
    action: str
    assignedUsers: list[str]
    options: list[str]
    timeoutSeconds: float | None
    proposedParams: dict[str, Any]
    dryRun: list[dict[str, Any]]
    link: str | None

    @staticmethod
    def _get_schema() -> str:
        return _schema("MedicApprovalRunFacet")


@attr.define
class MedicRemediationRunFacet(RunFacet):
    incidentId: int
    remediationId: int | None
    action: str
    status: str  # applied | superseded | resolved | failed
    decidedBy: str
    approver: str | None
    params: dict[str, Any]
    cleared: list[dict[str, Any]]
    leftAlone: list[dict[str, Any]]
    dagVersions: dict[str, Any]
    verifiedOutcome: str | None
    verifiedAt: str | None
    timeToFixSeconds: float | None
    verifiedBy: list[dict[str, Any]]

    @staticmethod
    def _get_schema() -> str:
        return _schema("MedicRemediationRunFacet")


# ---- who an incident's runs hang under ---------------------------------------------------------


def namespace() -> str:
    from airflow.providers.openlineage.conf import namespace as provider_namespace

    return str(provider_namespace())


def failed_task_run_id(record: FailureRecord) -> str:
    """The failed task instance's OpenLineage run id, as the provider derives it."""
    from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter

    date = record.logical_date or record.run_after
    if date is None:
        raise ValueError("the failure record has neither logical_date nor run_after")
    return str(
        OpenLineageAdapter.build_task_instance_run_id(
            dag_id=record.dag_id,
            task_id=record.task_id,
            try_number=record.try_number,
            logical_date=date,
            map_index=record.map_index,
        )
    )


def dag_run_id(record: FailureRecord) -> str:
    from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter

    date = record.logical_date or record.run_after
    if date is None:  # as in failed_task_run_id, which subject() asks first
        raise ValueError("the failure record has neither logical_date nor run_after")
    return OpenLineageAdapter.build_dag_run_id(
        dag_id=record.dag_id, logical_date=date, clear_number=record.clear_number
    )


def dataset_namespace(conn: psycopg.Connection) -> str:
    """``postgres://host:port`` of medic's database, as OpenLineage names Postgres datasets."""
    info = conn.info
    host = info.host if info.host and not info.host.startswith("/") else "localhost"  # a socket is local
    return f"postgres://{host}:{info.port or 5432}"


def subject(record: FailureRecord, incident_id: int, lineage_key: uuid.UUID | str, conn: psycopg.Connection) -> Subject:
    """Everything an incident's events need, as plain data that travels with its plan."""
    return {
        "incident_id": int(incident_id),
        "key": str(lineage_key),
        "namespace": namespace(),
        "datasets": dataset_namespace(conn),
        "database": conn.info.dbname,
        "job": f"{record.dag_id}.{record.task_id}",
        "run": failed_task_run_id(record),
        "root_job": record.dag_id,
        "root_run": dag_run_id(record),
    }


def run_id(subj: Subject, job: str) -> str:
    """The incident's run of ``job``: the same id from every process, no coordination."""
    return str(uuid.uuid5(uuid.UUID(subj["key"]), job))


def _parent(subj: Subject) -> parent_run.ParentRunFacet:
    ns = subj["namespace"]
    return parent_run.ParentRunFacet(
        run=parent_run.Run(runId=subj["run"]),
        job=parent_run.Job(namespace=ns, name=subj["job"]),
        root=parent_run.Root(
            run=parent_run.RootRun(runId=subj["root_run"]), job=parent_run.RootJob(namespace=ns, name=subj["root_job"])
        ),
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _event(
    subj: Subject,
    job: str,
    state: RunState,
    facets: Mapping[str, RunFacet],
    inputs: Iterable[str] = (),
    outputs: Iterable[str] = (),
) -> RunEvent:
    job_type = job_type_job.JobTypeJobFacet(processingType="BATCH", integration="AIRFLOW_MEDIC", jobType=JOB_TYPES[job])
    dataset = f"{subj['database']}.{{}}"
    return RunEvent(
        eventType=state,
        eventTime=_now(),
        run=Run(runId=run_id(subj, job), facets={"parent": _parent(subj), **facets}),
        job=Job(namespace=subj["namespace"], name=job, facets={"jobType": job_type}),
        inputs=[InputDataset(namespace=subj["datasets"], name=dataset.format(t)) for t in inputs],
        outputs=[OutputDataset(namespace=subj["datasets"], name=dataset.format(t)) for t in outputs],
        producer=PRODUCER,
    )


# ---- the events ----------------------------------------------------------------------------------


def _params(params: dict[str, Any]) -> dict[str, Any]:
    """A fix's parameters (as ``Decision.params`` and the remediation row hold them) in the facets' names."""
    return {
        "delaySeconds": int(params.get("delay_seconds", 0)),
        "includeDownstream": bool(params.get("include_downstream", True)),
        "rerunOnLatestVersion": bool(params.get("rerun_on_latest_version", False)),
    }


_POLICY_DECISION = {"auto": "apply", "approval": "approval", "escalate": "escalate"}


def diagnosis_event(
    *,
    subj: Subject,
    record: FailureRecord,
    incident: dict[str, Any],
    diagnosis: Diagnosis,
    route: str,
    reason: str,
    source: str,
    embedding_model: str | None,
    model: str | None,
    prompt_version: str | None,
    neighbours: list[dict[str, Any]],
    delay_seconds: int = 0,
) -> RunEvent:
    """The COMPLETE event of one diagnosis and the policy's route for it."""
    failure = MedicFailureRunFacet(
        dagId=record.dag_id,
        taskId=record.task_id,
        runId=record.run_id,
        mapIndex=record.map_index,
        tryNumber=record.try_number,
        exceptionType=record.exception_type,
        errorMessage=record.error_message[:2000],
        fingerprint=incident["fingerprint"],
        incidentId=int(incident["id"]),
        eventCount=int(incident["event_count"]),
    )
    verdict = MedicDiagnosisRunFacet(
        errorClass=diagnosis.error_class,
        transience=diagnosis.transience,
        action=diagnosis.action,
        confidence=float(diagnosis.confidence),
        automatic=route == "auto",
        route=route,
        decisionReason=reason,
        source=source,
        model=model,
        embeddingModel=embedding_model,
        promptVersion=prompt_version,
        rootCause=diagnosis.root_cause,
        evidence=list(diagnosis.evidence),
        similar=[
            {
                "key": n["key"],
                "kind": n["kind"],
                "errorClass": n.get("class"),
                "outcome": n.get("outcome"),
                "similarity": n["similarity"],
            }
            for n in neighbours
        ],
    )
    decision = MedicDecisionRunFacet(
        incidentId=int(incident["id"]),
        decidedBy="policy",
        user=None,
        decidedAt=_now(),
        decision=_POLICY_DECISION[route],
        option=None,
        params=_params({"delay_seconds": delay_seconds}) if route == "auto" else {},
        note=reason,
    )
    return _event(
        subj,
        DIAGNOSE_JOB,
        RunState.COMPLETE,
        {"medic_failure": failure, "medic_diagnosis": verdict, "medic_decision": decision},
        inputs=[KNOWLEDGE_TABLE],
        outputs=[DIAGNOSES_TABLE],
    )


def approval_requested_event(
    plan: remediation.Plan, assigned_users: list[str], timeout_seconds: float | None, link: str | None
) -> RunEvent:
    facet = MedicApprovalRunFacet(
        incidentId=plan.incident_id,
        action=plan.action,
        assignedUsers=list(assigned_users),
        options=list(remediation.OPTIONS),
        timeoutSeconds=timeout_seconds,
        proposedParams=_params(
            {
                "delay_seconds": plan.delay_seconds,
                "include_downstream": plan.include_downstream,
                "rerun_on_latest_version": plan.rerun_on_latest_version,
            }
        ),
        dryRun=[_ti(p) for p in plan.preview],
        link=link,
    )
    return _event(plan.lineage, APPROVE_JOB, RunState.START, {"medic_approval": facet}, inputs=[DIAGNOSES_TABLE])


def _decision_facet(
    plan: remediation.Plan, decision: remediation.Decision, option: str | None
) -> MedicDecisionRunFacet:
    by = {"auto": "policy", "user": "person", "timeout": "timeout"}[decision.decided_by]
    return MedicDecisionRunFacet(
        incidentId=plan.incident_id,
        decidedBy=by,
        user=decision.approver,
        decidedAt=_now(),
        decision=decision.kind,
        option=option,
        params=_params(decision.params()) if decision.kind == "apply" else {},
        note=decision.note,
    )


def approval_answered_event(plan: remediation.Plan, decision: remediation.Decision, option: str | None) -> RunEvent:
    """COMPLETE with the person's answer; ABORT when the request timed out unanswered."""
    state = RunState.ABORT if decision.decided_by == "timeout" else RunState.COMPLETE
    facets = {"medic_decision": _decision_facet(plan, decision, option)}
    return _event(plan.lineage, APPROVE_JOB, state, facets, inputs=[DIAGNOSES_TABLE], outputs=[REMEDIATIONS_TABLE])


def _ti(item: dict[str, Any]) -> dict[str, Any]:
    out = {"runId": item.get("run_id"), "taskId": item.get("task_id"), "mapIndex": item.get("map_index", -1)}
    for source, name in (("state", "state"), ("try_number", "tryNumber"), ("failed_try", "failedTry")):
        if item.get(source) is not None:
            out[name] = item[source]
    return out


def _remediation_facet(
    *,
    incident_id: int,
    remediation_id: int | None,
    action: str,
    status: str,
    decided_by: str,
    approver: str | None,
    params: dict[str, Any],
    result: dict[str, Any] | None,
    versions: dict[str, Any] | None,
    verified_at: datetime | None = None,
    seconds: float | None = None,
    verified_by: list[dict[str, Any]] | None = None,
) -> MedicRemediationRunFacet:
    """What a remediation did (``result`` as ``remediation.apply`` returns and stores it) and,
    once verified, how it ended."""
    result = result or {}
    verified = status in ("resolved", "failed")
    return MedicRemediationRunFacet(
        incidentId=incident_id,
        remediationId=remediation_id,
        action=action,
        status=status,
        decidedBy=decided_by,
        approver=approver,
        params=_params(params),
        cleared=[_ti(c) for c in result.get("cleared") or []],
        leftAlone=[_ti(c) for c in result.get("left_alone") or []],
        dagVersions=dict(versions or {}),
        verifiedOutcome=status if verified else None,
        verifiedAt=verified_at.isoformat() if verified_at else None,
        timeToFixSeconds=float(seconds) if seconds is not None else None,
        verifiedBy=[_ti(v) for v in verified_by or []],
    )


def remediation_applied_event(
    plan: remediation.Plan, decision: remediation.Decision, result: dict[str, Any]
) -> RunEvent:
    """START once the fix reached Airflow; ABORT when someone else had re-run every target."""
    applied = bool(result.get("cleared"))
    facet = _remediation_facet(
        incident_id=plan.incident_id,
        remediation_id=result.get("remediation_id"),
        action=plan.action,
        status="applied" if applied else "superseded",
        decided_by=decision.decided_by,
        approver=decision.approver,
        params=decision.params(),
        result=result,
        versions=result.get("dag_version"),
    )
    facets: dict[str, RunFacet] = {"medic_remediation": facet, "medic_decision": _decision_facet(plan, decision, None)}
    return _event(
        plan.lineage,
        REMEDIATE_JOB,
        RunState.START if applied else RunState.ABORT,
        facets,
        inputs=[DIAGNOSES_TABLE],
        outputs=[REMEDIATIONS_TABLE],
    )


_VERIFIED = """
SELECT r.id, r.action, r.decided_by, r.approver, r.params, r.result, r.dag_version, r.verified_outcome,
       r.verified_at, i.id, i.lineage_key, i.time_to_fix_seconds, e.payload,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('run_id', t.run_id, 'task_id', t.task_id,
               'map_index', t.map_index, 'try_number', t.outcome_try, 'state', t.outcome)), '[]')
          FROM medic.remediation_targets t WHERE t.remediation_id = r.id AND t.cleared)
  FROM medic.remediations r JOIN medic.incidents i ON i.id = r.incident_id
  JOIN medic.failure_events e ON e.id = i.first_event_id
 WHERE i.id = ANY(%s) AND r.verified_outcome IS NOT NULL
"""


def remediation_verified_events(conn: psycopg.Connection, incident_ids: list[int]) -> list[RunEvent]:
    """COMPLETE (resolved) or FAIL (failed) of each incident's remediation run, once verified."""
    events = []
    for row in conn.execute(_VERIFIED, (incident_ids,)).fetchall():
        (rid, action, decided_by, approver, params, result, versions, outcome, verified_at) = row[:9]
        incident_id, key, seconds, payload, verified_by = row[9:]
        facet = _remediation_facet(
            incident_id=incident_id,
            remediation_id=rid,
            action=action,
            status=outcome,
            decided_by=decided_by,
            approver=approver,
            params=params or {},
            result=result,
            versions=versions,
            verified_at=verified_at,
            seconds=seconds,
            verified_by=verified_by,
        )
        events.append(
            _event(
                subject(FailureRecord.model_validate(payload), incident_id, key, conn),
                REMEDIATE_JOB,
                RunState.COMPLETE if outcome == "resolved" else RunState.FAIL,
                {"medic_remediation": facet},
                inputs=[DIAGNOSES_TABLE],
                outputs=[REMEDIATIONS_TABLE, KNOWLEDGE_TABLE],
            )
        )
    return events


# ---- sending -------------------------------------------------------------------------------------


def enabled() -> bool:
    try:
        from airflow.providers.openlineage.conf import is_disabled
    except ImportError:
        return False
    return not is_disabled()


@functools.cache
def _adapter() -> OpenLineageAdapter:
    """One adapter (and so one client and transport) per process, as the provider keeps its own."""
    from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter

    return OpenLineageAdapter()


def _send(event: RunEvent) -> bool:
    try:
        _adapter().emit(event)
        return True
    except Exception as exc:  # lineage must never fail the diagnosis
        log.warning("medic: could not emit lineage (%s: %s)", type(exc).__name__, exc)
        return False


def emit(event: RunEvent) -> bool:
    """Send an event through the provider's configured transport; False when lineage is off."""
    return enabled() and _send(event)


def emit_built(what: str, build: Builder, *args: Any, **kwargs: Any) -> int:  # noqa: ANN401 (build's own arguments)
    """Build event(s) and emit them; a failure to build is logged, never raised. Returns how many went."""
    if not enabled():
        return 0
    try:
        built = build(*args, **kwargs)
    except Exception as exc:
        log.warning("medic: no lineage for %s (%s: %s)", what, type(exc).__name__, exc)
        return 0
    return sum(_send(e) for e in (built if isinstance(built, list) else [built]))


# ---- reading back ----------------------------------------------------------------------------


def to_dict(event: RunEvent) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(Serde.to_json(event))
    return parsed
