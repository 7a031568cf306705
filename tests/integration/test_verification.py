"""Verification and learning against real PostgreSQL: only medic's own re-runs count, once."""

from __future__ import annotations

import pytest
from psycopg.types.json import Jsonb

from medic.diagnose.embedding import get_embedder
from medic.remediate import remediation
from medic.verify import verification
from tests.integration.helpers import RETRY_DIAGNOSIS, filed_incident_id


@pytest.fixture(scope="module")
def embedder():
    return get_embedder()


def filed_incident(conn, n: int, task_id: str = "load") -> int:
    """A real incident: captured, claimed and filed as the DAG does; diagnosed as retry."""
    incident_id = filed_incident_id(conn, n, task_id=task_id, try_number=2)
    (diagnosis_id,) = conn.execute(
        "INSERT INTO medic.diagnoses (incident_id, source, error_class, action, confidence, automatic,"
        " decision_reason, diagnosis) VALUES (%s, 'retrieval', 'network_transient', 'retry', 0.9, true, 'test', %s)"
        " RETURNING id",
        (incident_id, Jsonb(RETRY_DIAGNOSIS.model_dump(mode="json"))),
    ).fetchone()
    conn.execute(
        "UPDATE medic.incidents SET status = 'remediating', route = 'auto', diagnosis_id = %s WHERE id = %s",
        (diagnosis_id, incident_id),
    )
    return incident_id


def applied(conn, incident_id: int, n: int, task_id: str = "load") -> None:
    """What ``remediation.apply`` leaves once the REST call cleared the task instance."""
    (remediation_id,) = conn.execute(
        "INSERT INTO medic.remediations (incident_id, action, decided_by, decision, status, applied_at)"
        " VALUES (%s, 'retry', 'auto', 'apply', 'applied', now()) RETURNING id",
        (incident_id,),
    ).fetchone()
    conn.execute(
        "INSERT INTO medic.remediation_targets (remediation_id, dag_id, run_id, task_id, map_index, failed_try,"
        " cleared) VALUES (%s, 'sales', %s, %s, -1, 2, true)",
        (remediation_id, f"manual__run_{n}", task_id),
    )


def finish(conn, n: int, try_number: int, succeeded: bool, task_id: str = "load"):
    return verification.record_run_outcome(
        conn,
        dag_id="sales",
        run_id=f"manual__run_{n}",
        task_id=task_id,
        map_index=-1,
        try_number=try_number,
        succeeded=succeeded,
    )


def status(conn, incident_id: int) -> tuple:
    return conn.execute(
        "SELECT i.status, i.time_to_fix_seconds IS NOT NULL, r.verified_outcome FROM medic.incidents i"
        " JOIN medic.remediations r ON r.incident_id = i.id WHERE i.id = %s",
        (incident_id,),
    ).fetchone()


def test_only_a_later_try_of_a_task_medic_cleared_verifies_and_only_once(it_conn) -> None:
    incident_id = filed_incident(it_conn, 1)
    applied(it_conn, incident_id, 1)
    assert finish(it_conn, 1, 2, True) == []  # the try medic was fixing (Airflow's own retry)
    assert finish(it_conn, 1, 3, True, task_id="other") == []  # another task of the run
    assert finish(it_conn, 2, 3, True) == []  # the same task in another run
    assert status(it_conn, incident_id) == ("remediating", False, None)

    (closed,) = finish(it_conn, 1, 3, True)
    assert closed["incident_id"] == incident_id and closed["status"] == "resolved"
    assert status(it_conn, incident_id) == ("resolved", True, "resolved")
    assert finish(it_conn, 1, 4, False) == []  # a later failure does not reopen a verified fix


def test_a_re_run_that_fails_for_good_verifies_the_fix_as_failed(it_conn) -> None:
    incident_id = filed_incident(it_conn, 1)
    applied(it_conn, incident_id, 1)
    (closed,) = finish(it_conn, 1, 3, False)
    assert closed["status"] == "failed"
    assert status(it_conn, incident_id) == ("failed", False, "failed")


def test_only_verified_incidents_are_learned_with_their_outcome_once(it_conn, embedder) -> None:
    it_conn.execute("TRUNCATE medic.knowledge")
    fixed, broken, pending = (filed_incident(it_conn, n, task_id=f"t{n}") for n in (1, 2, 3))
    for n, incident_id in ((1, fixed), (2, broken), (3, pending)):
        applied(it_conn, incident_id, n, task_id=f"t{n}")
    finish(it_conn, 1, 3, True, task_id="t1")
    finish(it_conn, 2, 3, False, task_id="t2")

    assert verification.learn_verified(it_conn, embedder) == 2
    learned = it_conn.execute(
        "SELECT source_key, outcome, action, error_class, fingerprint IS NOT NULL FROM medic.knowledge"
        " WHERE kind = 'incident' ORDER BY source_key"
    ).fetchall()
    assert learned == [
        (f"incident:{fixed}", "resolved", "retry", "network_transient", True),
        (f"incident:{broken}", "failed", "retry", "network_transient", True),
    ]
    assert verification.learn_verified(it_conn, embedder) == 0

    # the same facts, straight from the incidents (a fix verified a moment ago counts at once)
    (fingerprint,) = it_conn.execute("SELECT fingerprint FROM medic.incidents WHERE id = %s", (fixed,)).fetchone()
    found = {
        (m.source_key, m.outcome, m.via, m.similarity) for m in verification.verified_recurrences(it_conn, fingerprint)
    }
    assert found == {
        (f"incident:{fixed}", "resolved", "fingerprint", 1.0),
        (f"incident:{broken}", "failed", "fingerprint", 1.0),
    }
    assert verification.verified_recurrences(it_conn, None) == []


def test_a_decision_is_recorded_once_whatever_answers_later(it_conn) -> None:
    incident_id = filed_incident(it_conn, 1)
    plan = remediation.Plan(
        incident_id,
        "sales",
        "load",
        "approval",
        "",
        "network_transient",
        "transient",
        "retry",
        0.9,
        "",
        "",
        [],
        0,
        True,
        False,
        [],
    )
    first = remediation.record_decision(it_conn, plan, remediation.Decision("reject", "user", "ada"))
    assert first["status"] == "rejected"
    again = remediation.record_decision(it_conn, plan, remediation.Decision("escalate", "user", "bob"))
    assert again["outcome"] == "already decided"
    rows = it_conn.execute(
        "SELECT decision, approver FROM medic.remediations WHERE incident_id = %s", (incident_id,)
    ).fetchall()
    assert rows == [("reject", "ada")]
    assert it_conn.execute("SELECT status FROM medic.incidents WHERE id = %s", (incident_id,)).fetchone() == (
        "rejected",
    )
