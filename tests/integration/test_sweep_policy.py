"""A failure only the sweep found is never fixed automatically, on real PostgreSQL."""

from __future__ import annotations

import pytest
from psycopg.types.json import Jsonb

from medic.tasks import pipeline
from tests.integration.test_budget import filed

#: what retrieval found: a verified resolution of the same failure by a retry (gate 1 passes)
VERIFIED_RETRY = [
    {
        "kind": "incident",
        "key": "incident:99",
        "class": "network_transient",
        "action": "retry",
        "outcome": "resolved",
        "similarity": 0.93,
        "via": "fingerprint",
    }
]


@pytest.mark.parametrize(("source", "route"), [("task", "auto"), ("sweep", "approval")])
def test_the_same_evidence_is_automatic_from_a_listener_and_approved_from_the_sweep(
    it_conn, it_db, monkeypatch, source: str, route: str
) -> None:
    monkeypatch.setenv("AIRFLOW__MEDIC__CONN_ID", it_db)
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__DISABLED", "true")
    incident_id = filed(it_conn, 1)
    it_conn.execute(
        "UPDATE medic.diagnoses SET neighbours = %s WHERE incident_id = %s", (Jsonb(VERIFIED_RETRY), incident_id)
    )
    it_conn.execute(
        "UPDATE medic.failure_events SET payload = jsonb_set(payload, '{source}', to_jsonb(%s::text))"
        " WHERE incident_id = %s",
        (source, incident_id),
    )
    result = pipeline.decide_incidents({"backend": "none", "incidents": [incident_id]}, generated=None)
    (decided,) = result["decided"]
    assert decided["route"] == route
    if source == "sweep":
        assert "found by the sweep" in decided["reason"] and result["auto"] == []
