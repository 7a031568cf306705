"""Airflow's REST API as medic's remediation executor sees it: the official Python client
(``apache-airflow-client``), authenticated as a service user from a Connection.

Only three calls are needed: read a task instance, read a DAG run, clear task instances
(dry run for the approval preview, ``dry_run: false`` to apply). The Connection follows the
HTTP provider's convention: host (or a full URL in host), port, schema = http|https, login
and password of a user allowed to clear task instances. The token comes from the api-server's
``POST /auth/token``, as Airflow's client documentation does it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import httpx

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_client.client import ApiClient

    from medic.db import ConnectionFields

T = TypeVar("T")


def parse_time(ts: str) -> datetime:
    """A timestamp as the REST API writes it (ISO 8601, ``Z`` for UTC)."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


@dataclass(frozen=True)
class ClearedInstance:
    run_id: str
    task_id: str
    map_index: int
    state: str | None


class RemediationApi(Protocol):
    """What the executor needs from Airflow; the real one is :class:`AirflowApi`."""

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> dict[str, Any]: ...

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]: ...

    def clear(
        self,
        dag_id: str,
        run_id: str,
        task_keys: list[tuple[str, int]],
        *,
        dry_run: bool,
        include_downstream: bool,
        run_on_latest_version: bool,
        note: str,
    ) -> list[ClearedInstance]: ...


def base_url_of(connection: ConnectionFields) -> str:
    host = (connection.host or "").rstrip("/")
    if host.startswith(("http://", "https://")):
        return host
    scheme = connection.schema or "http"
    port = f":{connection.port}" if connection.port else ""
    return f"{scheme}://{host}{port}"


class AirflowApi:
    """The official client, one token per instance, renewed once on a 401."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._timeout = timeout
        self._client: ApiClient | None = None

    @classmethod
    def from_connection(cls, conn_id: str) -> AirflowApi:
        # Airflow on first use: the ``medic`` command's tools import this module (see medic.db)
        from airflow.sdk import BaseHook  # noqa: PLC0415

        connection = BaseHook.get_connection(conn_id)
        if not connection.login or not connection.password:
            raise ValueError(f"Connection {conn_id!r} needs the service user's login and password")
        return cls(base_url_of(connection), connection.login, connection.password)

    def _token(self) -> str:
        response = httpx.post(f"{self.base_url}/auth/token", json=self._credentials, timeout=self._timeout)
        if response.status_code >= 400:
            raise PermissionError(f"Airflow refused medic's service credential: {response.status_code}")
        return str(response.json()["access_token"])

    def _api(self, renew: bool = False) -> ApiClient:
        import airflow_client.client as airflow_client

        if self._client is None or renew:
            configuration = airflow_client.Configuration(host=self.base_url, access_token=self._token())
            self._client = airflow_client.ApiClient(configuration)
        return self._client

    def _call(self, make: Callable[[ApiClient], T]) -> T:
        from airflow_client.client.exceptions import UnauthorizedException

        try:
            return make(self._api())
        except UnauthorizedException:  # token expired: one new token, one more try
            return make(self._api(renew=True))

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> dict[str, Any]:
        from airflow_client.client import TaskInstanceApi, TaskInstanceResponse

        def get(api: ApiClient) -> TaskInstanceResponse:
            if map_index >= 0:
                return TaskInstanceApi(api).get_mapped_task_instance(dag_id, run_id, task_id, map_index)
            return TaskInstanceApi(api).get_task_instance(dag_id, run_id, task_id)

        ti = self._call(get)
        return {"state": _state(ti.state), "try_number": ti.try_number, "start_date": ti.start_date}

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        from airflow_client.client import DagRunApi

        run = self._call(lambda api: DagRunApi(api).get_dag_run(dag_id, run_id))
        versions = [
            {"version_number": v.version_number, "bundle_version": v.bundle_version, "id": str(v.id)}
            for v in run.dag_versions or []
        ]
        return {"state": _state(run.state), "dag_versions": versions}

    def clear(
        self,
        dag_id: str,
        run_id: str,
        task_keys: list[tuple[str, int]],
        *,
        dry_run: bool,
        include_downstream: bool,
        run_on_latest_version: bool,
        note: str,
    ) -> list[ClearedInstance]:
        from airflow_client.client import ClearTaskInstancesBody, TaskInstanceApi
        from airflow_client.client.models.clear_task_instances_body_task_ids_inner import (
            ClearTaskInstancesBodyTaskIdsInner,
        )

        task_ids = [
            ClearTaskInstancesBodyTaskIdsInner(task_id if map_index < 0 else [task_id, map_index])
            for task_id, map_index in task_keys
        ]
        body = ClearTaskInstancesBody(
            dag_run_id=run_id,
            task_ids=task_ids,
            dry_run=dry_run,  # always explicit: the API's default is a dry run
            only_failed=True,
            include_downstream=include_downstream,
            include_upstream=False,
            include_past=False,
            include_future=False,
            reset_dag_runs=True,
            run_on_latest_version=run_on_latest_version or None,
            note=None if dry_run else note[:1000],
        )
        response = self._call(lambda api: TaskInstanceApi(api).post_clear_task_instances(dag_id, body))
        return [
            ClearedInstance(ti.dag_run_id, ti.task_id, ti.map_index, _state(ti.state)) for ti in response.task_instances
        ]

    def failed_task_instances(self, since: datetime, until: datetime, page: int = 100) -> list[dict[str, Any]]:
        """Task instances that failed for good between ``since`` and ``until`` (their end), all DAGs."""
        from airflow_client.client import TaskInstanceApi, TaskInstanceCollectionResponse

        found: list[dict[str, Any]] = []
        while True:
            offset = len(found)

            def get(api: ApiClient, offset: int = offset) -> TaskInstanceCollectionResponse:
                return TaskInstanceApi(api).get_task_instances(
                    "~",
                    "~",
                    state=["failed"],
                    end_date_gte=since,
                    end_date_lte=until,
                    order_by=["end_date", "id"],
                    limit=page,
                    offset=offset,
                )

            response = self._call(get)
            batch = [ti.to_dict() for ti in response.task_instances]
            for ti in batch:
                ti["state"] = _state(ti.get("state"))
            found += batch
            # the server may cap a page below ``page`` ([api] maximum_page_limit): stop on empty
            # (an offset-paginated answer always carries its total; the model types it optional)
            if not batch or len(found) >= cast("int", response.total_entries):
                return found

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int) -> list[Any]:
        """One try's log as the api-server serves it: structured entries (or plain lines)."""
        from airflow_client.client import TaskInstanceApi

        # raw JSON: the client's model of a log entry keeps only time and text, not level and logger
        response = self._call(
            lambda api: TaskInstanceApi(api).get_log_without_preload_content(
                dag_id, run_id, task_id, try_number, full_content=True, map_index=map_index, accept="application/json"
            )
        )
        if response.status >= 400:
            raise RuntimeError(f"the log of {dag_id}/{run_id}/{task_id}#{try_number}: HTTP {response.status}")
        return list(json.loads(response.data).get("content") or [])


def _state(value: object) -> str | None:
    return None if value is None else str(getattr(value, "value", value))
