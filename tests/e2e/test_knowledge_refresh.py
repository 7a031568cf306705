"""Editing a runbook changes the knowledge asset, and medic_knowledge_refresh re-embeds it."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.helpers import query, wait_for

pytestmark = pytest.mark.e2e


def test_a_runbook_edit_is_reembedded_by_an_asset_triggered_refresh(stack) -> None:
    client = stack.client()

    def runs() -> list[dict]:
        return client.get("/api/v2/dags/medic_knowledge_refresh/dagRuns", limit=50)["dag_runs"]

    # A new deployment may start one scheduled run (the latest cron slot); let it finish first,
    # so that after the edit only the runbook watcher's asset event can start a refresh.
    time.sleep(5)
    wait_for(lambda: all(r["state"] in ("success", "failed") for r in runs()), 180, "start-up refreshes to end")
    before = {r["dag_run_id"] for r in runs()}

    runbook = Path(stack.env()["AIRFLOW__MEDIC__RUNBOOKS_PATH"]) / "timeout.md"
    marker = f"Check the warehouse queue first ({uuid.uuid4().hex[:8]})."
    text = runbook.read_text()
    # the summary entry is the first paragraph after the heading: add a sentence to it
    runbook.write_text(re.sub(r"(\n# [^\n]+\n\n[^\n]+)", lambda m: m.group(1) + " " + marker, text, count=1))

    new_runs = wait_for(
        lambda: [r for r in runs() if r["dag_run_id"] not in before and r["state"] == "success"],
        240,
        "a refresh run started by the runbook change",
    )
    assert {r["run_type"] for r in new_runs} == {"asset_triggered"}
    rows = query(
        stack,
        "SELECT text FROM medic.knowledge WHERE source_key = 'timeout.md#summary' AND text LIKE %s",
        (f"%{marker}%",),
    )
    assert len(rows) == 1
    client.close()
