"""Example: a partner API rejects the key from a Connection, and the client echoes the key."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["medic-demo"])
def demo_partner_api() -> None:
    @task
    def sync_partner_accounts() -> None:
        from medic_dev.examples import call_partner_api

        call_partner_api()

    sync_partner_accounts()


demo_partner_api()
