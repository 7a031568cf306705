"""medic_diagnose: every failure in the deployment, claimed, grouped into incidents, diagnosed.

Scheduled on the asset ``medic_task_failures``, whose watcher turns the failure outbox into
asset events. New incidents are diagnosed from failure memory (scrub, fingerprint, embed,
retrieve runbooks and verified incidents); generation, approval and remediation join here.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, get_current_context, task

from assets.medic_assets import MEDIC_TASK_FAILURES


@dag(
    dag_id="medic_diagnose",
    schedule=[MEDIC_TASK_FAILURES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    tags=["medic"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    doc_md=__doc__,
)
def medic_diagnose():
    @task
    def claim_failure_events() -> list[int]:
        from medic import pipeline

        context = get_current_context()
        pipeline.log.info("medic: woken by %s", pipeline.wakeup_summary(context["triggering_asset_events"]))
        return pipeline.claim_failure_events(owner=context["run_id"])

    @task
    def file_incidents(event_ids: list[int]) -> dict:
        from medic import pipeline

        return pipeline.file_incidents(event_ids, owner=get_current_context()["run_id"])

    @task
    def diagnose_incidents(filing: dict) -> dict:
        from medic import pipeline

        return pipeline.diagnose_incidents(filing)

    diagnose_incidents(file_incidents(claim_failure_events()))


medic_diagnose()
