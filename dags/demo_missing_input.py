"""Example: the day's landing file was never delivered by the upstream export."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["medic-demo"])
def demo_missing_input() -> None:
    @task
    def load_landing_file() -> int:
        from medic_dev.examples import demo_data_dir, load_landing_file

        # runs triggered without a logical date have no ds: use the run's start day
        day = get_current_context()["dag_run"].run_after.strftime("%Y-%m-%d")
        return load_landing_file(demo_data_dir(), day)

    load_landing_file()


demo_missing_input()
