"""medic_knowledge_refresh: embed runbooks (and, as they land, verified resolutions) into pgvector.

Runs when the knowledge asset changes and once a day: unchanged entries are not re-embedded,
so the daily run is cheap and picks up edited runbooks and a changed embedding model.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from assets.medic_assets import MEDIC_KNOWLEDGE


@dag(
    dag_id="medic_knowledge_refresh",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 3 * * *", timezone="UTC"), assets=MEDIC_KNOWLEDGE),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["medic"],
    doc_md=__doc__,
)
def medic_knowledge_refresh() -> None:
    @task
    def refresh_runbooks() -> dict:
        from medic.tasks import pipeline

        return pipeline.refresh_knowledge()

    refresh_runbooks()


medic_knowledge_refresh()
