"""A small client for Airflow 3's public REST API (/api/v2), for the CLI, demo, bench and tests.

Authentication is the api-server's own: a JWT from ``POST /auth/token`` with a user's
credentials. The remediation executor (a later part) takes its credential from a Connection.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from medic.remediate.remediation import APPROVAL_DAG, APPROVAL_TASK, approval_subject_suffix


class DevRestClient:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            response = self._http.post("/auth/token", json=self._credentials)
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:  # noqa: ANN401 (httpx's arguments)
        response = self._http.request(method, path, headers=self._headers(), **kwargs)
        if response.status_code == 401:  # token expired: get a new one once
            self._token = None
            response = self._http.request(method, path, headers=self._headers(), **kwargs)
        return response

    def get(self, path: str, **params: Any) -> Any:  # noqa: ANN401 (query parameters in, the JSON answer out)
        response = self.request("GET", path, params=params or None)
        response.raise_for_status()
        return response.json()

    def dag_exists(self, dag_id: str) -> bool:
        return self.request("GET", f"/api/v2/dags/{dag_id}").status_code == 200

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None) -> str:
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        response = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"triggering {dag_id} failed: {response.status_code} {response.text[:500]}")
        return response.json()["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000)["task_instances"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            state = self.dag_run(dag_id, run_id)["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(1)
        raise TimeoutError(f"{dag_id}/{run_id} still {state} after {timeout:.0f}s")

    def hitl_path(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
        return f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails"

    def hitl_detail(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> dict[str, Any] | None:
        response = self.request("GET", self.hitl_path(dag_id, run_id, task_id, map_index))
        return response.json() if response.status_code == 200 else None

    def respond(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: int,
        option: str,
        params_input: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """Answer a HITL request through the endpoint the UI uses; the caller reads the status."""
        body = {"chosen_options": [option], "params_input": params_input or {}}
        return self.request("PATCH", self.hitl_path(dag_id, run_id, task_id, map_index), json=body)

    def awaiting_approval(self, diagnose_run: str, incident_id: int) -> int | None:
        """The map index of the incident's approval task while it waits for an answer, else None."""
        for ti in self.task_instances(APPROVAL_DAG, diagnose_run):
            if ti["task_id"] != APPROVAL_TASK or ti["state"] != "awaiting_input":
                continue
            detail = self.hitl_detail(APPROVAL_DAG, diagnose_run, APPROVAL_TASK, ti["map_index"])
            if detail and detail["subject"].endswith(approval_subject_suffix(incident_id)):
                return ti["map_index"]
        return None

    def close(self) -> None:
        self._http.close()
