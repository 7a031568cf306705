"""The generation budget on real PostgreSQL: a rolling hourly cap that concurrent diagnose runs
cannot overrun, that a retried task does not spend twice, and what happens beyond it."""

from __future__ import annotations

import threading

import pytest
from psycopg.types.json import Jsonb

from medic.diagnose import generation
from medic.tasks import pipeline
from tests.integration.helpers import RETRY_DIAGNOSIS, filed_incident_id


def filed(conn, n: int) -> int:
    """A real incident (captured, claimed, filed as the DAG does) with its retrieval diagnosis."""
    incident_id = filed_incident_id(conn, n, task_id=f"load_{n}")
    conn.execute(
        "INSERT INTO medic.diagnoses (incident_id, source, error_class, action, confidence, automatic,"
        " decision_reason, diagnosis, neighbours) VALUES (%s, 'retrieval', 'network_transient', 'retry', 0.9,"
        " false, 'retrieval', %s, '[]')",
        (incident_id, Jsonb(RETRY_DIAGNOSIS.model_dump(mode="json"))),
    )
    conn.execute("UPDATE medic.incidents SET status = 'diagnosed' WHERE id = %s", (incident_id,))
    return incident_id


def spent(conn) -> int:
    return conn.execute("SELECT count(*) FROM medic.generation_budget").fetchone()[0]


def test_the_cap_holds_a_retry_spends_nothing_and_the_hour_frees_budget(it_conn) -> None:
    ids = [filed(it_conn, n) for n in range(8)]
    allowed, over = generation.reserve_generations(it_conn, ids, per_hour=5)
    assert (allowed, over) == (ids[:5], ids[5:])
    # the same task retried: the five keep their reservation, nobody gets a sixth
    assert generation.reserve_generations(it_conn, ids, per_hour=5) == (ids[:5], ids[5:])
    assert spent(it_conn) == 5
    # an hour later the budget is back
    it_conn.execute("UPDATE medic.generation_budget SET reserved_at = now() - interval '61 minutes'")
    assert generation.reserve_generations(it_conn, ids[5:], per_hour=5) == (ids[5:], [])
    # 0 means no cap
    more = [filed(it_conn, n) for n in range(8, 20)]
    assert generation.reserve_generations(it_conn, more, per_hour=0) == (more, [])


def test_concurrent_runs_cannot_both_take_the_last_slots(embedded, it_conn) -> None:
    ids = [filed(it_conn, n) for n in range(12)]
    granted: list[int] = []
    barrier = threading.Barrier(3)

    def reserve(mine: list[int]) -> None:
        with embedded.connect_postgres("medic_it", autocommit=True) as conn:
            barrier.wait()
            granted.extend(generation.reserve_generations(conn, mine, per_hour=5)[0])

    threads = [threading.Thread(target=reserve, args=(ids[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(granted) == 5 and spent(it_conn) == 5


def test_an_incident_over_budget_is_decided_from_retrieval_and_says_so(it_conn, it_db, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__MEDIC__CONN_ID", it_db)
    monkeypatch.setenv("AIRFLOW__MEDIC__MAX_GENERATIONS_PER_HOUR", "7")
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__DISABLED", "true")
    incident_id = filed(it_conn, 1)
    result = pipeline.decide_incidents(
        {"backend": "cpu", "incidents": [incident_id], "over_budget": [incident_id]}, generated=None
    )
    (decided,) = result["decided"]
    assert decided["class"] == "network_transient"  # the retrieval diagnosis, not an escalation
    assert "generation budget of 7 per hour spent" in decided["reason"]
    sources = [
        r[0] for r in it_conn.execute("SELECT source FROM medic.diagnoses WHERE incident_id = %s", (incident_id,))
    ]
    assert sources == ["retrieval"]  # no model diagnosis was invented


@pytest.mark.parametrize("per_hour", [1, 3])
def test_nothing_is_reserved_for_an_empty_batch(it_conn, per_hour: int) -> None:
    assert generation.reserve_generations(it_conn, [], per_hour=per_hour) == ([], [])
    assert spent(it_conn) == 0
