"""medic's lineage events: valid against the official spec and medic's facet schemas, linked to
the failed task's run as the OpenLineage provider names it, and free of secrets."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from medic.capture import outbox
from medic.capture.records import build_record
from medic.contract import Diagnosis
from medic.diagnose import incidents
from medic.lineage import events as lineage
from medic.remediate import remediation
from medic.verify import verification
from medic_dev import lineage_files
from tests.integration.helpers import record as failure_record
from tests.unit.test_records import FakeTaskInstance, _raise

SPEC = Path(__file__).resolve().parents[3] / "shared" / "openlineage-spec"
#: skips beside a checkout without ../shared; fails in CI (tests/conftest.py)
needs_spec = pytest.mark.shared("openlineage-spec")
RUN_AFTER = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)


class _DagRun:
    logical_date = None
    run_after = RUN_AFTER
    clear_number = 0


@dataclass
class _Info:
    host: str = "/tmp/medic-pg"
    port: int = 5432
    dbname: str = "medic"


class _Conn:
    """Only ``info``, which is what ``lineage.subject`` reads of a psycopg connection."""

    info = _Info()


@pytest.fixture(scope="module")
def validator() -> lineage_files.Validator:
    return lineage_files.Validator(str(SPEC))


def _record(password: str = "Hunter2-planted"):
    ti = FakeTaskInstance(dag_id="sales", task_id="load", try_number=2)
    ti.dag_run = _DagRun()  # as Airflow's ORM task instance carries it
    return build_record(ti, _raise(RuntimeError(f"login failed for postgresql://etl:{password}@db/x")), source="task")


def _diagnosis(rec) -> Diagnosis:
    return Diagnosis(
        error_class="auth_failure",
        transience="permanent",
        root_cause="bad password",
        evidence=[rec.error_message],
        action="fix_credentials",
        confidence=0.8,
        explanation="the warehouse refused the login",
    )


def _plan(rec, route: str = "approval") -> remediation.Plan:
    diagnosis = _diagnosis(rec)
    target = remediation.Target("sales", rec.run_id, "load", -1, 2)
    plan = remediation.build_plan(7, "sales", "load", route, "needs a person", diagnosis, [target], [])
    plan.lineage = lineage.subject(rec, 7, uuid.uuid4(), _Conn())
    plan.preview = [{"run_id": rec.run_id, "task_id": "load", "map_index": -1, "state": "failed"}]
    return plan


def _diagnosis_event(password: str = "Hunter2-planted") -> dict:
    rec = _record(password)
    plan = _plan(rec)
    event = lineage.diagnosis_event(
        subj=plan.lineage,
        record=rec,
        incident={"id": 7, "fingerprint": "abc123", "event_count": 2},
        diagnosis=_diagnosis(rec),
        route="approval",
        reason="action fix_credentials needs a person",
        source="retrieval",
        embedding_model="sentence-transformers/all-MiniLM-L6-v2",
        model=None,
        prompt_version=None,
        neighbours=[
            {
                "key": "auth_failure.md#example-3",
                "kind": "runbook",
                "class": "auth_failure",
                "outcome": None,
                "similarity": 0.71,
            }
        ],
    )
    return lineage.to_dict(event)


@needs_spec
def test_diagnosis_event_validates_against_the_spec_and_medics_facets(validator) -> None:
    event = _diagnosis_event()
    assert validator.problems(event) == []
    facets = event["run"]["facets"]
    assert facets["medic_diagnosis"]["_schemaURL"].startswith(lineage.SCHEMA_BASE)
    assert facets["medic_failure"]["incidentId"] == 7
    assert facets["medic_decision"]["decidedBy"] == "policy" and facets["medic_decision"]["decision"] == "approval"
    # a socket host is local; Postgres datasets are named <database>.<schema>.<table>
    assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [
        ("postgres://localhost:5432", "medic.medic.knowledge")
    ]


@needs_spec
def test_an_invalid_facet_is_reported(validator) -> None:
    event = _diagnosis_event()
    event["run"]["facets"]["medic_diagnosis"]["confidence"] = 3.5
    del event["run"]["facets"]["medic_failure"]["fingerprint"]
    problems = validator.problems(event)
    assert any("medic_diagnosis" in p and "3.5" in p for p in problems)
    assert any("medic_failure" in p and "fingerprint" in p for p in problems)


def test_parent_is_the_failed_task_run_as_the_provider_names_it() -> None:
    from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter

    parent = _diagnosis_event()["run"]["facets"]["parent"]
    assert parent["job"]["name"] == "sales.load"
    assert parent["run"]["runId"] == OpenLineageAdapter.build_task_instance_run_id(
        dag_id="sales", task_id="load", try_number=2, logical_date=RUN_AFTER, map_index=-1
    )
    assert parent["root"]["job"]["name"] == "sales"


def test_no_planted_secret_reaches_the_event() -> None:
    assert "Hunter2-planted" not in json.dumps(_diagnosis_event(password="Hunter2-planted"))


@needs_spec
def test_approval_and_remediation_events_validate_and_share_the_incidents_run_ids(validator) -> None:
    plan = _plan(_record())
    requested = lineage.to_dict(lineage.approval_requested_event(plan, ["admin"], 1800.0, "http://x/required_actions"))
    approve = remediation.Decision("apply", "user", "admin", delay_seconds=60)
    answered = lineage.to_dict(lineage.approval_answered_event(plan, approve, "Apply with changes"))
    applied = lineage.to_dict(
        lineage.remediation_applied_event(
            plan,
            approve,
            {"remediation_id": 3, "cleared": [{"run_id": "r", "task_id": "load", "map_index": -1, "state": None}]},
        )
    )
    superseded = lineage.to_dict(
        lineage.remediation_applied_event(plan, approve, {"remediation_id": 3, "cleared": [], "left_alone": []})
    )
    timed_out = lineage.to_dict(
        lineage.approval_answered_event(plan, remediation.Decision("expire", "timeout", None, note="late"), None)
    )
    for event in (requested, answered, applied, superseded, timed_out):
        assert validator.problems(event) == [], event["eventType"]
        assert event["run"]["facets"]["parent"]["job"]["name"] == "sales.load"
    assert (requested["eventType"], answered["eventType"], timed_out["eventType"]) == ("START", "COMPLETE", "ABORT")
    assert requested["run"]["runId"] == answered["run"]["runId"] == lineage.run_id(plan.lineage, lineage.APPROVE_JOB)
    assert applied["run"]["runId"] != answered["run"]["runId"]
    decision = answered["run"]["facets"]["medic_decision"]
    assert (decision["decidedBy"], decision["user"], decision["option"]) == ("person", "admin", "Apply with changes")
    assert decision["params"]["delaySeconds"] == 60
    assert requested["run"]["facets"]["medic_approval"]["dryRun"][0]["state"] == "failed"
    assert (applied["eventType"], superseded["eventType"]) == ("START", "ABORT")
    assert applied["run"]["facets"]["medic_remediation"]["status"] == "applied"
    assert superseded["run"]["facets"]["medic_remediation"]["status"] == "superseded"


@needs_spec
def test_a_facet_that_breaks_its_schema_is_caught(validator) -> None:
    plan = _plan(_record())
    event = lineage.to_dict(lineage.approval_requested_event(plan, ["admin"], None, None))
    event["run"]["facets"]["medic_approval"]["options"] = []
    assert any("medic_approval" in p for p in validator.problems(event))


def _failure(n: int):
    """Run n's failure; two runs fail differently so each files its own incident."""
    exc = ("ConnectionRefusedError", "TimeoutError")[n % 2]
    return failure_record(n, try_number=2, exc=exc).model_copy(update={"run_after": RUN_AFTER})


def _filed(conn, n: int) -> int:
    rec = _failure(n)
    outbox.record_failure(conn, rec, diagnose_retries=False)
    ids = outbox.claim_pending(conn, owner=f"run-{n}", lease_seconds=60, max_attempts=5)
    (incident_id,) = incidents.file_claimed_events(conn, ids, f"run-{n}").incident_ids
    (remediation_id,) = conn.execute(
        "INSERT INTO medic.remediations (incident_id, action, decided_by, decision, status, applied_at, result)"
        " VALUES (%s, 'retry', 'auto', 'apply', 'applied', now(), '{\"cleared\": []}') RETURNING id",
        (incident_id,),
    ).fetchone()
    conn.execute(
        "INSERT INTO medic.remediation_targets (remediation_id, dag_id, run_id, task_id, map_index, failed_try,"
        " cleared) VALUES (%s, 'sales', %s, 'load', -1, 2, true)",
        (remediation_id, rec.run_id),
    )
    return incident_id


@needs_spec
def test_a_verified_outcome_ends_the_remediation_run_on_the_failed_tasks_parent(it_conn, validator) -> None:
    resolved, failed = _filed(it_conn, 1), _filed(it_conn, 2)
    for n, ok in ((1, True), (2, False)):
        closed = verification.record_run_outcome(
            it_conn,
            dag_id="sales",
            run_id=f"manual__run_{n}",
            task_id="load",
            map_index=-1,
            try_number=3,
            succeeded=ok,
        )
        assert [c["incident_id"] for c in closed] == [resolved if ok else failed]
    events = {
        e["run"]["facets"]["medic_remediation"]["incidentId"]: e
        for e in map(lineage.to_dict, lineage.remediation_verified_events(it_conn, [resolved, failed]))
    }
    assert events[resolved]["eventType"] == "COMPLETE" and events[failed]["eventType"] == "FAIL"
    run_of = {resolved: 1, failed: 2}
    for incident_id, event in events.items():
        assert validator.problems(event) == []
        facet = event["run"]["facets"]["medic_remediation"]
        assert facet["verifiedBy"][0]["tryNumber"] == 3 and facet["verifiedOutcome"] == facet["status"]
        assert event["run"]["facets"]["parent"]["run"]["runId"] == lineage.failed_task_run_id(
            _failure(run_of[incident_id])
        )
        key = it_conn.execute("SELECT lineage_key FROM medic.incidents WHERE id = %s", (incident_id,)).fetchone()[0]
        assert event["run"]["runId"] == str(uuid.uuid5(key, lineage.REMEDIATE_JOB))
    database = it_conn.info.dbname
    assert {o["name"] for o in events[resolved]["outputs"]} == {
        f"{database}.medic.remediations",
        f"{database}.medic.knowledge",
    }
