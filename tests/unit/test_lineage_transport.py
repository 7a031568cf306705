"""The scrubbing transport: what reaches the wrapped transport has no secret, and nothing else
changed (run ids, job names, facet structure), so lineage still links up."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.facet_v2 import error_message_run
from openlineage.client.transport import get_default_factory
from openlineage.client.uuid import generate_new_uuid

KEY = "Zq7-unguessable-unit-42"


def _fail_event(message: str) -> RunEvent:
    facet = error_message_run.ErrorMessageRunFacet(
        message=message, programmingLanguage="python", stackTrace=f"Traceback:\n  PermissionError: {message}"
    )
    return RunEvent(
        eventType=RunState.FAIL,
        eventTime=datetime.now(timezone.utc).isoformat(),
        run=Run(runId=str(generate_new_uuid()), facets={"errorMessage": facet}),
        job=Job(namespace="ns", name="demo_partner_api.sync_partner_accounts"),
        producer="https://example.com/test",
    )


def test_secrets_in_a_providers_fail_event_never_reach_the_file(tmp_path) -> None:
    from airflow.sdk.log import mask_secret

    mask_secret(KEY)  # as BaseHook.get_connection registers a Connection's password in the task
    path = tmp_path / "events.jsonl"
    transport = get_default_factory().create(
        {
            "type": "medic.lineage.transport.ScrubbingTransport",
            "transport": {"type": "file", "log_file_path": str(path), "append": True},
        }
    )
    event = _fail_event(f"partner API rejected key {KEY}; dsn postgresql://etl:Hunter2-planted@db/x")
    transport.emit(event)
    (written,) = [json.loads(line) for line in path.read_text().splitlines()]
    text = json.dumps(written)
    assert KEY not in text and "Hunter2-planted" not in text
    facet = written["run"]["facets"]["errorMessage"]
    assert "[REDACTED" in facet["message"] and "partner API rejected key" in facet["message"]
    assert written["run"]["runId"] == event.run.runId and written["job"]["name"] == event.job.name
    assert written["eventType"] == "FAIL" and facet["_schemaURL"].endswith("ErrorMessageRunFacet")


def test_a_wrapper_without_a_transport_to_wrap_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match='needs "transport"'):
        get_default_factory().create({"type": "medic.lineage.transport.ScrubbingTransport"})


def test_a_dag_runs_conf_is_scrubbed_by_key_not_only_by_look(tmp_path) -> None:
    """``{'db_pass': 'Hunter...'}`` looks like nothing on its own: its key says it is a secret."""
    path = tmp_path / "events.jsonl"
    transport = get_default_factory().create(
        {
            "type": "medic.lineage.transport.ScrubbingTransport",
            "transport": {"type": "file", "log_file_path": str(path), "append": True},
        }
    )
    event = _fail_event("task failed")
    conf = {"target": "prod", "db_pass": "Vq83mXz0", "partner": {"auth": {"api_key": "pk-71hQz2"}}, "rows": 5}
    event.run.facets["airflow"] = {"dagRun": {"conf": conf, "run_id": "manual__2026"}}  # type: ignore[index]
    transport.emit(event)
    (written,) = [json.loads(line) for line in path.read_text().splitlines()]
    text = json.dumps(written)
    assert "Vq83mXz0" not in text and "pk-71hQz2" not in text
    seen = written["run"]["facets"]["airflow"]["dagRun"]
    assert seen["conf"]["target"] == "prod" and seen["conf"]["rows"] == 5 and seen["run_id"] == "manual__2026"
    assert seen["conf"]["db_pass"].startswith("[REDACTED")
