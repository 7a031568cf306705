"""medic's retry policy against real PostgreSQL: verified rows written the way capture, filing,
remediation and verification write them; the policy reads them at a new failure of the same kind."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
from psycopg.types.json import Jsonb

from medic.capture import listener, outbox
from medic.contract import Diagnosis
from medic.diagnose import incidents
from medic.policy.retry import MedicRetryPolicy
from medic.remediate.remediation import Decision
from medic.verify import verification
from medic.view import report
from tests.unit.test_records import FakeTaskInstance

DAG_ID, TASK_ID = "inventory", "call_api"


def call_inventory_api() -> None:
    """Task code whose upstream refuses connections: the same place and words each time."""
    raise ConnectionRefusedError(111, "Connection refused: inventory-api.internal:8443")


def parse_inventory() -> None:
    """Task code with a bug: the same KeyError each time."""
    raise KeyError("sku")


def failure_of(code) -> BaseException:
    try:
        code()
    except BaseException as caught:
        return caught
    raise AssertionError("the task code did not fail")


def diagnosis(error_class: str, action: str) -> Diagnosis:
    return Diagnosis(
        error_class=error_class,  # type: ignore[arg-type]
        transience="transient" if action.startswith("retry") else "permanent",
        root_cause="seen before",
        action=action,  # type: ignore[arg-type]
        confidence=0.9,
        explanation="seen before",
    )


@pytest.fixture
def capture_to_it_db(monkeypatch, it_db: str) -> None:
    """The listener and the policy write to and read from the integration database."""
    import airflow.sdk  # noqa: F401  (a task process has it loaded)

    monkeypatch.setenv("AIRFLOW__MEDIC__CONN_ID", it_db)


def fixed_before(
    conn, code, *, run: int, error_class: str, action: str, decided_by: str, delay: int, succeeded: bool
) -> int:
    """One failure of ``code`` as medic lived it: captured by the listener in the task, filed into an
    incident, diagnosed, a fix applied that re-ran it, and the re-run's outcome verified."""
    ti = FakeTaskInstance(dag_id=DAG_ID, task_id=TASK_ID, run_id=f"manual__seed_{run}", try_number=1, max_tries=0)
    record = listener._build(ti, failure_of(code), "task")  # the record the listener stores
    outbox.record_failure(conn, record, diagnose_retries=False)
    owner = f"diagnose-{run}"
    ids = outbox.claim_pending(conn, owner=owner, lease_seconds=60, max_attempts=5)
    (incident_id,) = incidents.file_claimed_events(conn, ids, owner).incident_ids
    found = diagnosis(error_class, action)
    (diagnosis_id,) = conn.execute(
        "INSERT INTO medic.diagnoses (incident_id, source, error_class, action, confidence, automatic,"
        " decision_reason, diagnosis) VALUES (%s, 'retrieval', %s, %s, 0.9, false, 'seeded', %s) RETURNING id",
        (incident_id, error_class, action, Jsonb(found.model_dump(mode="json"))),
    ).fetchone()
    conn.execute(
        "UPDATE medic.incidents SET status = 'remediating', route = %s, diagnosis_id = %s, decided_at = now()"
        " WHERE id = %s",
        ("auto" if decided_by == "auto" else "approval", diagnosis_id, incident_id),
    )
    decision = Decision("apply", decided_by, "admin" if decided_by == "user" else None, delay_seconds=delay)  # type: ignore[arg-type]
    # what remediation.apply leaves once Airflow's REST API cleared the task instance
    (remediation_id,) = conn.execute(
        "INSERT INTO medic.remediations (incident_id, action, params, decided_by, approver, decision, status,"
        " applied_at) VALUES (%s, %s, %s, %s, %s, 'apply', 'applied', now()) RETURNING id",
        (incident_id, action, Jsonb(decision.params()), decision.decided_by, decision.approver),
    ).fetchone()
    conn.execute(
        "INSERT INTO medic.remediation_targets (remediation_id, dag_id, run_id, task_id, map_index, failed_try,"
        " cleared) VALUES (%s, %s, %s, %s, -1, 1, true)",
        (remediation_id, DAG_ID, ti.run_id, TASK_ID),
    )
    (closed,) = verification.record_run_outcome(
        conn, dag_id=DAG_ID, run_id=ti.run_id, task_id=TASK_ID, map_index=-1, try_number=2, succeeded=succeeded
    )
    assert closed["status"] == ("resolved" if succeeded else "failed")
    return incident_id


def fails_again(code, run: int = 100, try_number: int = 1, max_tries: int = 3):
    """A new run's try of the same task fails the same way: what the policy decides."""
    ti = FakeTaskInstance(
        dag_id=DAG_ID, task_id=TASK_ID, run_id=f"manual__new_{run}", try_number=try_number, max_tries=max_tries
    )
    exc = failure_of(code)
    decision = MedicRetryPolicy().evaluate(exc, try_number, max_tries, {"ti": ti})  # type: ignore[arg-type]
    return decision, ti, exc


def test_a_failure_a_retry_resolved_is_retried_at_once(it_conn, capture_to_it_db) -> None:
    incident_id = fixed_before(
        it_conn,
        call_inventory_api,
        run=1,
        error_class="network_transient",
        action="retry",
        decided_by="auto",
        delay=0,
        succeeded=True,
    )
    decision, _, _ = fails_again(call_inventory_api)
    assert decision.action.value == "retry" and decision.retry_delay == timedelta(0)
    assert decision.reason == (
        f"medic: exact recurrence of incident {incident_id} (network_transient), verified resolved by retry;"
        " retrying now"
    )


def test_a_verified_backoff_is_retried_after_its_learned_delay(it_conn, capture_to_it_db) -> None:
    fixed_before(
        it_conn,
        call_inventory_api,
        run=1,
        error_class="rate_limited",
        action="retry_with_backoff",
        decided_by="user",
        delay=90,
        succeeded=True,
    )
    decision, _, _ = fails_again(call_inventory_api)
    assert decision.action.value == "retry" and decision.retry_delay == timedelta(seconds=90)


def test_a_failure_fixed_by_a_persons_code_change_fails_at_its_first_try_and_the_record_says_why(
    it_conn, capture_to_it_db
) -> None:
    incident_id = fixed_before(
        it_conn,
        parse_inventory,
        run=1,
        error_class="code_bug",
        action="fix_code",
        decided_by="user",
        delay=0,
        succeeded=True,
    )
    decision, ti, exc = fails_again(parse_inventory)
    assert decision.action.value == "fail"
    assert f"incident {incident_id} (code_bug)" in (decision.reason or "") and "fix_code" in (decision.reason or "")

    # Airflow fails the task; the listener, later in the same process, stores the decision with the failure
    failed = replace(ti, state="failed")
    assert listener.capture_failure(failed, exc, source="task").startswith("captured failure")
    (stored,) = it_conn.execute(
        "SELECT payload->'retry_decision', status FROM medic.failure_events WHERE run_id = %s", (ti.run_id,)
    ).fetchall()
    kept, status = stored
    assert status == "pending"  # a final failure: medic diagnoses it and a person hears of it
    assert kept["action"] == "fail" and kept["reason"] == decision.reason and kept["precedents"] == [incident_id]
    assert (
        kept["fingerprint"]
        == it_conn.execute("SELECT fingerprint FROM medic.incidents WHERE id = %s", (incident_id,)).fetchone()[0]
    )
    assert 0 < kept["elapsed_ms"] < 2000  # the whole decision, database round trip included
    json.dumps(kept)  # plain JSON, as the incident's record keeps it

    # filed like any final failure: the incident's story shows the decision beside the failed try
    ids = outbox.claim_pending(it_conn, owner="diagnose-new", lease_seconds=60, max_attempts=5)
    (new_incident,) = incidents.file_claimed_events(it_conn, ids, "diagnose-new").incident_ids
    detail = report.incident_detail(it_conn, new_incident)
    assert detail is not None
    (event,) = detail.events
    assert event.try_number == 1 and event.retry_decision == kept


def test_a_failure_whose_retry_failed_fails_now(it_conn, capture_to_it_db) -> None:
    fixed_before(
        it_conn,
        call_inventory_api,
        run=1,
        error_class="upstream_unavailable",
        action="retry",
        decided_by="auto",
        delay=0,
        succeeded=False,
    )
    decision, _, _ = fails_again(call_inventory_api)
    assert decision.action.value == "fail" and "a re-run (retry) did not fix" in (decision.reason or "")


def test_only_verified_fixes_of_the_exact_failure_count(it_conn, capture_to_it_db) -> None:
    fixed_before(
        it_conn,
        parse_inventory,
        run=1,
        error_class="code_bug",
        action="fix_code",
        decided_by="user",
        delay=0,
        succeeded=True,
    )
    # another failure entirely: nothing verified about it
    other, _, _ = fails_again(call_inventory_api)
    assert other.action.value == "default" and "no verified fix" in (other.reason or "")
    # a fix applied but not verified yet (the re-run has not finished): not memory yet
    ti = FakeTaskInstance(dag_id=DAG_ID, task_id="other", run_id="manual__pending", try_number=1, max_tries=0)
    outbox.record_failure(it_conn, listener._build(ti, failure_of(call_inventory_api), "task"), diagnose_retries=False)
    ids = outbox.claim_pending(it_conn, owner="d", lease_seconds=60, max_attempts=5)
    (pending,) = incidents.file_claimed_events(it_conn, ids, "d").incident_ids
    it_conn.execute(
        "INSERT INTO medic.remediations (incident_id, action, decided_by, decision, status, applied_at)"
        " VALUES (%s, 'retry', 'auto', 'apply', 'applied', now())",
        (pending,),
    )
    still, _, _ = fails_again(call_inventory_api)
    assert still.action.value == "default"


def test_retry_and_failure_verified_for_the_same_failure_is_default(it_conn, capture_to_it_db) -> None:
    fixed_before(
        it_conn,
        call_inventory_api,
        run=1,
        error_class="network_transient",
        action="retry",
        decided_by="auto",
        delay=0,
        succeeded=True,
    )
    it_conn.execute("UPDATE medic.incidents SET status = 'resolved'")  # the episode ended; it recurs
    fixed_before(
        it_conn,
        call_inventory_api,
        run=2,
        error_class="network_transient",
        action="retry",
        decided_by="auto",
        delay=0,
        succeeded=False,
    )
    decision, _, _ = fails_again(call_inventory_api)
    assert decision.action.value == "default" and "disagrees" in (decision.reason or "")
