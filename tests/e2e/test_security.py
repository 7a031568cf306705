"""Security on the real stack: secrets stay in the failing task, the service account is least
privilege. docs/SECURITY.md lists every security property with the test that covers it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from medic_dev.examples import PLANTED_API_KEY, PLANTED_PASSWORD
from medic_dev.rest_client import DevRestClient
from medic_dev.stack import COMPONENTS, SERVICE_USER
from tests.e2e.helpers import query, wait_for

pytestmark = pytest.mark.e2e

#: pipelines that put a planted secret in their failure: a DSN password in the log and the
#: error, and a Connection's key echoed by a client library
LEAKY = ("demo_warehouse_load", "demo_partner_api")


def _secrets(stack) -> dict[str, str]:
    return {
        "planted DSN password": PLANTED_PASSWORD,
        "planted Connection key": PLANTED_API_KEY,
        "service account password": stack.service_password(),
        "admin password": stack.admin_password(),
    }


def _leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value in text]


def _not_a_users_task(component_log: str) -> str:
    """A component's log without the lines a user's task wrote: the LocalExecutor's supervisor
    echoes each task's own log (the failing task's, which may print its own secrets) into the
    scheduler's output; those lines carry the task's ``ti_id``."""
    return "\n".join(
        line for line in component_log.splitlines() if "ti_id=" not in line or re.search(r"\bdag_id=medic_", line)
    )


def _airflow_rows(stack, sql: str) -> str:
    with stack.connect_postgres("airflow", autocommit=True) as conn:
        return "\n".join(json.dumps(row, default=str) for row in conn.execute(sql).fetchall())


@pytest.fixture(scope="module")
def leaky_failures_decided(stack, client) -> list[int]:
    """Both leaky pipelines failed, medic filed, diagnosed and decided them."""
    incidents = []
    for dag_id in LEAKY:
        run_id = client.trigger(dag_id)
        assert client.wait_for_run(dag_id, run_id, timeout=240) == "failed"
        (incident_id,) = wait_for(
            lambda dag_id=dag_id, run_id=run_id: query(
                stack,
                "SELECT i.id FROM medic.failure_events e JOIN medic.incidents i ON i.id = e.incident_id"
                " WHERE e.dag_id = %s AND e.run_id = %s AND i.route IS NOT NULL",
                (dag_id, run_id),
            ),
            240,
            f"the incident of {dag_id} to be decided",
        )[0]
        incidents.append(incident_id)
    return incidents


def test_trigger_kwargs_name_connections_never_hold_credentials(stack, leaky_failures_decided) -> None:
    """What the triggerer stores and reloads (the trigger table) names a Connection id only."""
    script = (
        "import json\n"
        "from airflow.models.trigger import Trigger\n"
        "from airflow.utils.session import create_session\n"
        "with create_session() as s:\n"
        "    print(json.dumps([[t.classpath, t.kwargs] for t in s.query(Trigger)], default=str))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env={**stack.env()}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    triggers = json.loads(done.stdout.strip().splitlines()[-1])
    ours = [kwargs for classpath, kwargs in triggers if classpath == "medic.triggers.watchers.FailureEventTrigger"]
    assert ours, triggers
    for kwargs in ours:
        assert set(kwargs) == {"conn_id", "poll_seconds", "lease_seconds", "batch_limit"}
        assert kwargs["conn_id"] == "medic_db"
    assert _leaks(json.dumps(triggers, default=str), _secrets(stack)) == []


def test_no_secret_in_xcoms_approval_bodies_or_medics_tables(stack, leaky_failures_decided) -> None:
    secrets = _secrets(stack)
    xcoms = _airflow_rows(
        stack, "SELECT dag_id, task_id, key, value::text FROM xcom WHERE dag_id IN ('medic_diagnose', 'medic_sweep')"
    )
    assert "network" in xcoms or "class" in xcoms  # medic's XComs are there to be read
    assert _leaks(xcoms, secrets) == []

    approvals = _airflow_rows(stack, "SELECT subject, body, params::text, options::text FROM hitl_detail")
    assert _leaks(approvals, secrets) == []

    with stack.connect_postgres("medic", autocommit=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'medic'")]
        dump = "\n".join(
            json.dumps(row, default=str)
            for table in tables
            for row in conn.execute(f"SELECT to_jsonb(t)::text FROM medic.{table} t").fetchall()
        )
    planted = [
        json.dumps(r[0])
        for r in query(stack, "SELECT payload FROM medic.failure_events WHERE dag_id = ANY(%s)", (list(LEAKY),))
    ]
    assert any("[REDACTED" in p or "***" in p for p in planted)  # the secrets were there, and were scrubbed
    assert _leaks(dump, secrets) == []


def test_no_secret_in_medics_task_logs_component_logs_or_lineage(stack, leaky_failures_decided) -> None:
    secrets = _secrets(stack)
    logs = stack.airflow_home / "logs"
    medic_logs = [p for dag in ("medic_diagnose", "medic_sweep") for p in (logs / f"dag_id={dag}").rglob("*.log")]
    assert medic_logs
    for path in medic_logs:
        assert _leaks(path.read_text(errors="replace"), secrets) == [], path
    component_logs = sorted(stack.log_dir.glob("*.log"))
    assert {path.stem for path in component_logs} >= set(COMPONENTS), component_logs  # every one is read
    for path in component_logs:
        assert _leaks(_not_a_users_task(path.read_text(errors="replace")), secrets) == [], path
    if stack.lineage_transport()["transport"]["type"] == "file":  # not sent to Marquez instead
        # the provider and medic both wrote lineage of the failures above: it is read too
        assert stack.lineage_file.exists() and stack.lineage_file.stat().st_size > 0
        assert _leaks(stack.lineage_file.read_text(errors="replace"), secrets) == []


def test_the_service_account_can_clear_task_instances_but_not_touch_connections_variables_or_pools(
    stack, client
) -> None:
    """Role ``user``: read DAGs and task instances, clear them (a dry run here). Not connections,
    variables' writes, pools or approvals (test_remediation test 5 covers those)."""
    service = DevRestClient(stack.api_url, SERVICE_USER, stack.service_password())
    try:
        dry_run = service.request(
            "POST",
            "/api/v2/dags/demo_missing_input/clearTaskInstances",
            json={"dry_run": True, "only_failed": True},
        )
        assert dry_run.status_code == 200, dry_run.text
        assert service.request("GET", "/api/v2/connections").status_code == 403
        assert service.request("GET", "/api/v2/connections/medic_db").status_code == 403
        assert service.request("POST", "/api/v2/variables", json={"key": "x", "value": "y"}).status_code == 403
        assert service.request("POST", "/api/v2/pools", json={"name": "medic_grab", "slots": 128}).status_code == 403
        patch = service.request("PATCH", "/api/v2/pools/medic_llm", json={"name": "medic_llm", "slots": 64})
        assert patch.status_code == 403
    finally:
        service.close()
    assert client.get("/api/v2/pools/medic_llm")["slots"] == 1  # untouched
