"""Example: an orders API call whose upstream drops connections (retried once by Airflow)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, get_current_context, task


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["medic-demo"],
    params={"endpoint": "", "flaky_until_try": 2},  # endpoint "": a local API that resets connections
    default_args={"retries": 1, "retry_delay": timedelta(seconds=2)},
)
def demo_flaky_api() -> None:
    @task
    def fetch_orders() -> int:
        from medic_dev.examples import fetch_orders as fetch

        context = get_current_context()
        params = context["params"]
        rows = fetch(params["endpoint"], context["ti"].try_number, int(params["flaky_until_try"]))
        return len(rows)

    fetch_orders()


demo_flaky_api()
