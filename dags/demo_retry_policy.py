"""Example: medic's retry policy deciding a task's retries from what medic verified before.

Two DAGs run the same task code. ``demo_retry_policy_seed`` has no retries: its failures go
medic's way (diagnosis, a person's approval, a re-run, the verified outcome) and become
memory. ``demo_retry_policy`` retries each task 3 times, 5 minutes apart, as a production
task might; at a failure medic already knows exactly, its retry policy decides in the worker:
the refused API call (once resolved by a retry) is retried at once, the transform's KeyError on
a row without customer_id (whose re-run did not fix it) fails at its first try instead of three
retries later.

``fetch_inventory`` names its policy (``retry_policy=MedicRetryPolicy()``); ``transform``
gets it from medic's cluster policy, which the embedded stack enables in its
airflow_local_settings.py (``from medic.policy.cluster import task_policy``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, dag, get_current_context, task

from medic.policy.retry import MedicRetryPolicy
from medic_dev.examples import REFUSING_ENDPOINT


def inventory_pipeline(dag_id: str, retries: int) -> DAG:
    @dag(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        tags=["medic-demo"],
        # fail_tries: the inventory API refuses this many tries, then answers; rows: what the
        # transform gets (by default a row without customer_id, which the transform's bug trips on)
        params={"endpoint": REFUSING_ENDPOINT, "fail_tries": 1, "rows": [{"order_id": 1, "amount": 3.0}]},
        default_args={"retries": retries, "retry_delay": timedelta(minutes=5)},
    )
    def pipeline() -> None:
        @task(retry_policy=MedicRetryPolicy())
        def fetch_inventory() -> int:
            from medic_dev.examples import fetch_orders

            context = get_current_context()
            params = context["params"]
            return len(fetch_orders(params["endpoint"], context["ti"].try_number, int(params["fail_tries"])))

        @task
        def transform() -> list[dict[str, Any]]:
            from medic_dev.examples import transform_orders

            return transform_orders(list(get_current_context()["params"]["rows"]))

        fetch_inventory()
        transform()

    return pipeline()


inventory_pipeline("demo_retry_policy", retries=3)
inventory_pipeline("demo_retry_policy_seed", retries=0)
