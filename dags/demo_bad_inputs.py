"""Example: failures that are hard to capture: a 20 MB log, binary bytes, an unprintable error."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["medic-demo"],
    params={"log_megabytes": 20},
)
def demo_bad_inputs() -> None:
    @task
    def huge_log(params: Any = None) -> None:  # noqa: ANN401 (the DAG's params, which Airflow injects)
        from medic_dev.examples import huge_log_then_fail

        huge_log_then_fail(int(params["log_megabytes"]))

    @task
    def binary_output() -> None:
        from medic_dev.examples import binary_output_then_fail

        binary_output_then_fail()

    @task
    def unprintable_error() -> None:
        from medic_dev.examples import unprintable_failure

        unprintable_failure()

    huge_log()
    binary_output()
    unprintable_error()


demo_bad_inputs()
