"""Example: the task's process is killed from outside (OOM killer, eviction): no listener sees it."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["medic-demo"])
def demo_killed_worker() -> None:
    @task(retries=0)
    def load_partition() -> None:
        from medic_dev.examples import killed_by_the_kernel

        killed_by_the_kernel()

    load_partition()


demo_killed_worker()
