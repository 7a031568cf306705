"""OpenLineage for medic's work, emitted through Airflow's OpenLineage provider.

Each diagnosis becomes a COMPLETE run event of the job ``medic.diagnose`` with two custom
facets (``medic_failure``, ``medic_diagnosis``; schemas in ``lineage_facets/``) and a
ParentRunFacet that names the failed task's own OpenLineage run, computed exactly as the
provider computes it (job ``<dag_id>.<task_id>`` in the deployment's namespace), so Marquez
shows what medic concluded about which run. The knowledge base is an input dataset and the
diagnoses table an output. Everything in an event comes from scrubbed records.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

import attr
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import RunFacet, job_type_job, parent_run
from openlineage.client.uuid import generate_new_uuid

log = logging.getLogger(__name__)

SCHEMA_BASE = "https://airflow-medic.github.io/spec/facets/1-0-0/"
PRODUCER = "https://github.com/airflow-medic/airflow-medic"
DIAGNOSE_JOB = "medic.diagnose"


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
        return SCHEMA_BASE + "MedicFailureRunFacet.json#/$defs/MedicFailureRunFacet"


@attr.define
class MedicDiagnosisRunFacet(RunFacet):
    errorClass: str
    transience: str
    action: str
    confidence: float
    automatic: bool
    decisionReason: str
    source: str
    embeddingModel: str | None
    promptVersion: str | None
    evidence: list[str]
    similar: list[dict[str, Any]]

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_BASE + "MedicDiagnosisRunFacet.json#/$defs/MedicDiagnosisRunFacet"


def namespace() -> str:
    from airflow.providers.openlineage.conf import namespace as provider_namespace

    return provider_namespace()


def failed_task_run_id(record: Any) -> str:
    """The failed task instance's OpenLineage run id, as the provider derives it."""
    from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter

    date = record.logical_date or record.run_after
    if date is None:
        raise ValueError("the failure record has neither logical_date nor run_after")
    return OpenLineageAdapter.build_task_instance_run_id(
        dag_id=record.dag_id,
        task_id=record.task_id,
        try_number=record.try_number,
        logical_date=date,
        map_index=record.map_index,
    )


def dag_run_id(record: Any) -> str:
    from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter

    return OpenLineageAdapter.build_dag_run_id(
        dag_id=record.dag_id, logical_date=record.logical_date or record.run_after, clear_number=record.clear_number
    )


def diagnosis_event(
    *,
    record: Any,
    incident: dict[str, Any],
    diagnosis: Any,
    automatic: bool,
    reason: str,
    source: str,
    embedding_model: str | None,
    neighbours: list[dict[str, Any]],
    database: str,
) -> RunEvent:
    """The COMPLETE event of one diagnosis, linked to the failed task's run."""
    ns = namespace()
    parent = parent_run.ParentRunFacet(
        run=parent_run.Run(runId=failed_task_run_id(record)),
        job=parent_run.Job(namespace=ns, name=f"{record.dag_id}.{record.task_id}"),
        root=parent_run.Root(
            run=parent_run.RootRun(runId=dag_run_id(record)), job=parent_run.RootJob(namespace=ns, name=record.dag_id)
        ),
    )
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
        automatic=bool(automatic),
        decisionReason=reason,
        source=source,
        embeddingModel=embedding_model,
        promptVersion=None,
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
    job_type = job_type_job.JobTypeJobFacet(processingType="BATCH", integration="AIRFLOW_MEDIC", jobType="DIAGNOSIS")
    return RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=datetime.now(timezone.utc).isoformat(),
        run=Run(
            runId=str(generate_new_uuid()),
            facets={"parent": parent, "medic_failure": failure, "medic_diagnosis": verdict},
        ),
        job=Job(namespace=ns, name=DIAGNOSE_JOB, facets={"jobType": job_type}),
        inputs=[InputDataset(namespace=database, name="medic.knowledge")],
        outputs=[OutputDataset(namespace=database, name="medic.diagnoses")],
        producer=PRODUCER,
    )


def emit(event: RunEvent) -> bool:
    """Send an event through the provider's configured transport; False when lineage is off."""
    try:
        from airflow.providers.openlineage.conf import is_disabled
        from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter
    except ImportError:
        log.info("medic: the OpenLineage provider is not installed; no lineage emitted")
        return False
    if is_disabled():
        return False
    try:
        OpenLineageAdapter().emit(event)
        return True
    except Exception as exc:  # lineage must never fail the diagnosis
        log.warning("medic: could not emit lineage (%s: %s)", type(exc).__name__, exc)
        return False


def to_dict(event: RunEvent) -> dict[str, Any]:
    import json

    from openlineage.client.serde import Serde

    return json.loads(Serde.to_json(event))


def project_facet_schemas() -> list[dict[str, Any]]:
    from importlib import resources

    folder = resources.files("medic").joinpath("lineage_facets")
    return [json.loads(entry.read_text()) for entry in folder.iterdir() if entry.name.endswith(".json")]


def validate_event(event: dict[str, Any], spec_dir: str) -> list[str]:
    """Problems with one emitted event: against OpenLineage.json, and each facet against the
    schema its ``_schemaURL`` names (the official facets in ``spec_dir``, medic's own packaged)."""
    from pathlib import Path

    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    schemas = [json.loads(p.read_text()) for p in Path(spec_dir).rglob("*.json")] + project_facet_schemas()
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)
    known = {s["$id"] for s in schemas}
    problems = [
        f"event: {e.message}"
        for e in Draft202012Validator(
            {"$ref": "https://openlineage.io/spec/2-0-2/OpenLineage.json"}, registry=registry
        ).iter_errors(event)
    ]
    facets = [("run", k, v) for k, v in ((event.get("run") or {}).get("facets") or {}).items()]
    facets += [("job", k, v) for k, v in ((event.get("job") or {}).get("facets") or {}).items()]
    for where, name, facet in facets:
        url = facet.get("_schemaURL", "")
        if url.split("#")[0] not in known:
            problems.append(f"{where} facet {name}: no schema known for {url!r}")
            continue
        validator = Draft202012Validator({"$ref": url}, registry=registry)
        problems += [f"{where} facet {name}: {e.message}" for e in validator.iter_errors(facet)]
    return problems
