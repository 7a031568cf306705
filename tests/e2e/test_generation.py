"""Generation on the real stack: medic_diagnose's generate step runs in the generation environment.

The module asks the session stack for generation ([medic] llm_backend = cpu, a tiny local model,
the .venv-llm interpreter): tests/e2e/conftest.py restarts the dag-processor and scheduler once
for it, and nothing restores them afterwards, since the module runs after every module that
needs the plain stack (E2E_LAST in tests/conftest.py).
"""

from __future__ import annotations

import itertools
from datetime import datetime, timezone

import pytest

from medic.airflow_api import parse_time
from tests.e2e.helpers import query, run_bench, wait_filed, wait_for

pytestmark = pytest.mark.e2e

#: the storm's smoke size: every DAG fails with each of the 3 causes several times (grouping),
#: and the second wave's new incidents arrive while the first wave's generate (the pool)
STORM_FAILURES, STORM_DAGS, STORM_WAVES, CAUSES = 24, 2, 2, 3


@pytest.fixture(scope="module")
def stack_settings(llm_python, tiny_model) -> dict[str, str]:
    """medic_diagnose with a generate step, on CPU, in the generation environment."""
    return {
        "AIRFLOW__MEDIC__LLM_BACKEND": "cpu",
        "AIRFLOW__MEDIC__LLM_PYTHON": llm_python,
        "AIRFLOW__MEDIC__LLM_MODEL": tiny_model,
    }


@pytest.fixture
def generating(stack, client, llm_python) -> str:
    """The interpreter generation runs in; medic_diagnose has its generate step on the llm queue."""
    assert stack.env()["AIRFLOW__MEDIC__LLM_PYTHON"] == llm_python
    task = client.get("/api/v2/dags/medic_diagnose/tasks/generate_diagnoses")
    assert (task["queue"], task["operator_name"]) == ("llm", "@task.external_python")
    return llm_python


def test_the_model_diagnoses_in_its_own_environment_and_the_policy_decides(stack, client, generating) -> None:
    task = client.get("/api/v2/dags/medic_diagnose/tasks/generate_diagnoses")
    assert (task["queue"], task["operator_name"]) == ("llm", "@task.external_python")

    run_id = client.trigger("demo_prompt_injection")
    client.wait_for_run("demo_prompt_injection", run_id)
    (event,) = wait_filed(stack, "demo_prompt_injection", run_id, 1, 90)
    incident_id = event["incident_id"]
    assert "ignore previous instructions" in event["payload"]["log_tail"]  # the model was shown the injection
    decided = wait_for(
        lambda: query(
            stack,
            "SELECT route, route_reason, status, diagnosis_id FROM medic.incidents WHERE id = %s AND route IS NOT NULL",
            (incident_id,),
        ),
        300,
        "the incident's decision",
    )
    route, reason, status, diagnosis_id = decided[0]
    rows = query(
        stack,
        "SELECT id, source, action, route, generation FROM medic.diagnoses WHERE incident_id = %s ORDER BY id",
        (incident_id,),
    )
    assert [r[1] for r in rows] == ["retrieval", "llm:cpu"]
    model_row = rows[1]
    assert diagnosis_id == model_row[0]  # the decision used the model's diagnosis
    generation = model_row[4]
    # it ran in the generation environment's interpreter, where Airflow is not even importable
    assert generation["python"] == generating and generation["airflow_importable"] is False
    assert generation["backend"] == "cpu" and generation["batch_size"] >= 1
    # a random model may say anything allowed, and the log asked for a retry: never automatic without
    # verified evidence
    assert route in ("approval", "escalate") and reason
    if generation["refused"]:
        assert (model_row[2], route, status) == ("escalate", "escalate", "escalated")
    else:
        assert generation["raw"].startswith("{")  # a valid answer, which may itself escalate
        # an approval waits in the UI (on the test stack it escalates unanswered after 30 s)
        assert status in (("escalated",) if route == "escalate" else ("awaiting_approval", "escalated"))
    ti = client.get(f"/api/v2/dags/medic_diagnose/dagRuns/{event['processed_by']}/taskInstances/generate_diagnoses")
    assert ti["state"] == "success"


def _overlapping(intervals: list[tuple[str, str]]) -> list[tuple[datetime, datetime]]:
    ordered = sorted((parse_time(a), parse_time(b)) for a, b in intervals)
    return [(a, b) for a, b in itertools.pairwise(ordered) if b[0] < a[1]]


def test_a_storm_in_two_waves_gives_one_incident_per_dag_and_cause_and_one_generation_each(
    stack, client, generating
) -> None:
    """An outage: failures reported at once through the listener's code (see bench/storm.py for
    why they are not Airflow tasks on this machine); everything after is the real stack. The
    bench's default 500 failures over 10 DAGs is the measured figure (docs/DESIGN.md); this is
    the smallest storm that still shows each property: several failures per incident, several
    diagnose runs generating at once, exactly once throughout."""
    task = client.get("/api/v2/dags/medic_diagnose/tasks/generate_diagnoses")
    assert task["pool"] == "medic_llm"  # the budget guardrail holds the GPU work
    started = datetime.now(timezone.utc)
    result = run_bench(
        stack,
        "storm",
        *("--failures", str(STORM_FAILURES), "--dags", str(STORM_DAGS), "--waves", str(STORM_WAVES)),
        *("--writers", "4"),
        timeout=900,
    )
    assert result["failures"] == result["recorded"] == STORM_FAILURES
    assert result["report_seconds"] < 60  # all of them within a minute
    expected = STORM_DAGS * CAUSES
    assert result["incidents"] == result["expected_incidents"] == expected  # grouped by fingerprint, per task
    # every incident holds its share of the storm: one cause of one DAG, each failure filed once
    per_incident = query(
        stack,
        "SELECT incident_id, count(*) FROM medic.failure_events WHERE run_id = %s GROUP BY incident_id",
        (result["run_id"],),
    )
    assert sorted(n for _, n in per_incident) == [STORM_FAILURES // expected] * expected, per_incident
    assert result["generations"] == result["incidents"]  # the model saw each incident once
    assert (result["lost"], result["duplicated"]) == (0, 0)
    # never a flood of approvals: one request per incident that needs a person (Airflow's own
    # HITL rows, counted by the bench), never one per failure; and some incident did need one
    assert 1 <= result["approvals"] == result["routed_approval"] <= result["incidents"], result

    # the pool has one slot on this stack: generation runs never overlapped
    runs = client.get(
        "/api/v2/dags/medic_diagnose/dagRuns", run_after_gte=started.isoformat(), order_by="-run_after", limit=100
    )["dag_runs"]
    generated = []
    for run in runs:
        ti = client.request(
            "GET", f"/api/v2/dags/medic_diagnose/dagRuns/{run['dag_run_id']}/taskInstances/generate_diagnoses"
        )
        if ti.status_code == 200 and ti.json()["start_date"] and ti.json()["end_date"]:
            generated.append(ti.json())
    assert len(generated) >= STORM_WAVES and all(g["pool"] == "medic_llm" for g in generated)
    assert _overlapping([(g["start_date"], g["end_date"]) for g in generated]) == []
