"""Example: a long wait on an upstream export (what a person might stop by marking it failed)."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["medic-demo"])
def demo_long_running() -> None:
    @task
    def wait_for_export() -> None:
        from medic_dev.examples import wait_for_export

        wait_for_export(seconds=300)

    wait_for_export()


demo_long_running()
