"""Diagnosis lineage events: valid against the official spec and medic's facet schemas,
linked to the failed task's run as the OpenLineage provider names it, and free of secrets."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from medic import lineage
from medic.diagnosis import Diagnosis
from medic.records import build_record
from tests.unit.test_records import FakeTaskInstance, _raise

SPEC = Path(__file__).resolve().parents[3] / "shared" / "openlineage-spec"


class _DagRun:
    logical_date = None
    run_after = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)
    clear_number = 0


def _event(password: str = "Hunter2-planted"):
    ti = FakeTaskInstance(dag_id="sales", task_id="load", try_number=2)
    ti.dag_run = _DagRun()  # as Airflow's ORM task instance carries it
    record = build_record(ti, _raise(RuntimeError(f"login failed for postgresql://etl:{password}@db/x")), source="task")
    diagnosis = Diagnosis(
        error_class="auth_failure",
        transience="permanent",
        root_cause="bad password",
        evidence=[record.error_message],
        action="fix_credentials",
        confidence=0.8,
        explanation="the warehouse refused the login",
    )
    event = lineage.diagnosis_event(
        record=record,
        incident={"id": 7, "fingerprint": "abc123", "event_count": 2},
        diagnosis=diagnosis,
        automatic=False,
        reason="action fix_credentials needs a person",
        source="retrieval",
        embedding_model="sentence-transformers/all-MiniLM-L6-v2",
        neighbours=[
            {
                "key": "auth_failure.md#example-3",
                "kind": "runbook",
                "class": "auth_failure",
                "outcome": None,
                "similarity": 0.71,
            }
        ],
        database="postgres://medic_db",
    )
    return record, lineage.to_dict(event)


@pytest.mark.skipif(not SPEC.exists(), reason="shared/openlineage-spec is not beside this checkout")
def test_diagnosis_event_validates_against_the_spec_and_medics_facets() -> None:
    _, event = _event()
    assert lineage.validate_event(event, str(SPEC)) == []
    facets = event["run"]["facets"]
    assert facets["medic_diagnosis"]["_schemaURL"].startswith(lineage.SCHEMA_BASE)
    assert facets["medic_failure"]["incidentId"] == 7


@pytest.mark.skipif(not SPEC.exists(), reason="shared/openlineage-spec is not beside this checkout")
def test_an_invalid_facet_is_reported() -> None:
    _, event = _event()
    event["run"]["facets"]["medic_diagnosis"]["confidence"] = 3.5
    del event["run"]["facets"]["medic_failure"]["fingerprint"]
    problems = lineage.validate_event(event, str(SPEC))
    assert any("medic_diagnosis" in p and "3.5" in p for p in problems)
    assert any("medic_failure" in p and "fingerprint" in p for p in problems)


def test_parent_is_the_failed_task_run_as_the_provider_names_it() -> None:
    from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter

    _, event = _event()
    parent = event["run"]["facets"]["parent"]
    assert parent["job"]["name"] == "sales.load"
    assert parent["run"]["runId"] == OpenLineageAdapter.build_task_instance_run_id(
        dag_id="sales", task_id="load", try_number=2, logical_date=_DagRun.run_after, map_index=-1
    )
    assert parent["root"]["job"]["name"] == "sales"


def test_no_planted_secret_reaches_the_event() -> None:
    _, event = _event(password="Hunter2-planted")
    assert "Hunter2-planted" not in json.dumps(event)
