"""Example: the warehouse refuses connections; the task logs its DSN, password and all."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["medic-demo"])
def demo_warehouse_load() -> None:
    @task
    def load_warehouse() -> None:
        from medic_dev.examples import load_warehouse

        load_warehouse()

    load_warehouse()


demo_warehouse_load()
