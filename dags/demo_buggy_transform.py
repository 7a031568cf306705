"""Example: a transform that assumes a field every row does not have (a code bug)."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["medic-demo"])
def demo_buggy_transform() -> None:
    @task
    def extract() -> list[dict]:
        return [{"order_id": 1, "customer_id": 7, "amount": 12.5}, {"order_id": 2, "amount": 3.0}]

    @task
    def transform(rows: list[dict]) -> list[dict]:
        from medic_dev.examples import transform_orders

        return transform_orders(rows)

    transform(extract())


demo_buggy_transform()
