"""Editing a runbook changes the knowledge asset, and medic_knowledge_refresh re-embeds it."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from medic.airflow_api import parse_time
from tests.e2e.helpers import query, wait_for

pytestmark = pytest.mark.e2e

DAG_ID = "medic_knowledge_refresh"


def test_a_runbook_edit_is_reembedded_by_an_asset_triggered_refresh(stack) -> None:
    client = stack.client()

    def runs() -> list[dict]:
        return client.get(f"/api/v2/dags/{DAG_ID}/dagRuns", limit=100)["dag_runs"]

    # A new deployment may start one scheduled run (the latest cron slot): wait until the
    # scheduler has no cron slot left to start (its next one is in the future) and every run
    # so far has ended, so that after the edit only an asset event can start a refresh. Alone
    # on a fresh stack the DAG may not even be parsed yet, and its first slot not yet started.
    def scheduled_runs_settled() -> bool:
        if not client.dag_exists(DAG_ID):
            return False
        next_slot = client.get(f"/api/v2/dags/{DAG_ID}")["next_dagrun_run_after"]
        if next_slot and parse_time(next_slot) <= datetime.now(timezone.utc):
            return False
        return all(r["state"] in ("success", "failed") for r in runs())

    wait_for(scheduled_runs_settled, 240, "start-up refreshes to end", interval=1)
    before = {r["dag_run_id"] for r in runs()}

    runbook = Path(stack.env()["AIRFLOW__MEDIC__RUNBOOKS_PATH"]) / "timeout.md"
    marker = f"Check the warehouse queue first ({uuid.uuid4().hex[:8]})."
    text = runbook.read_text()
    # the summary entry is the first paragraph after the heading: add a sentence to it
    runbook.write_text(re.sub(r"(\n# [^\n]+\n\n[^\n]+)", lambda m: m.group(1) + " " + marker, text, count=1))

    def reembedded() -> list[tuple] | None:
        done = [r for r in runs() if r["dag_run_id"] not in before and r["state"] == "success"]
        return done and query(
            stack,
            "SELECT text FROM medic.knowledge WHERE source_key = 'timeout.md#summary' AND text LIKE %s",
            (f"%{marker}%",),
        )

    rows = wait_for(reembedded, 240, "a refresh run started by the runbook change to re-embed it")
    assert len(rows) == 1
    new_runs = [r for r in runs() if r["dag_run_id"] not in before]
    assert new_runs and {r["run_type"] for r in new_runs} == {"asset_triggered"}, new_runs
    client.close()
