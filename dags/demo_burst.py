"""Example: many mapped tasks failing at once with a few distinct causes (bursts and storms)."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["medic-demo"],
    params={"failures": 30},
    max_active_tasks=64,
)
def demo_burst() -> None:
    @task
    def shards() -> list[int]:
        return list(range(int(get_current_context()["params"]["failures"])))

    @task
    def process_shard(index: int) -> None:
        from medic_dev.examples import burst_failure

        burst_failure(index)

    process_shard.expand(index=shards())


demo_burst()
