"""medic_sweep: the safety net for failures no listener reported.

A listener runs inside the process that failed; a process killed with SIGKILL (the OOM killer,
an evicted pod), a capture that timed out, or medic's database down at that moment leaves a
failure Airflow knows and medic does not. Every ``[medic] sweep_interval_minutes`` this DAG
asks Airflow's REST API (as ``[medic] api_conn_id``'s service user) for final failures in the
lookback window, records the ones the outbox lacks (``source = 'sweep'``, same natural key:
never twice), and verifies medic's re-runs whose outcome the listener missed. The records wake
``medic_diagnose`` through the outbox like any other failure.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from medic import config

SWEEP_EVERY = timedelta(minutes=config.get_float("sweep_interval_minutes"))


@dag(
    dag_id="medic_sweep",
    schedule=SWEEP_EVERY,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["medic"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    doc_md=__doc__,
)
def medic_sweep() -> None:
    @task(execution_timeout=timedelta(minutes=10))
    def sweep_uncaptured_failures() -> dict:
        from medic.capture import sweep

        return sweep.run_sweep()

    sweep_uncaptured_failures()


medic_sweep()
