"""The incidents view's FastAPI app, mounted by medic's plugin in Airflow's api-server at ``/medic``.

Every data endpoint resolves the caller through Airflow's own authentication (the JWT in the
``Authorization`` header, else the UI's session cookie) and shows only incidents of DAGs the
caller may read, as Airflow's auth manager says. The queries are ``medic.view.report``'s.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import psycopg
from airflow.configuration import conf

# The FastAPI app itself: this module is imported only where the app is built (the api-server)
from fastapi import Depends, FastAPI, HTTPException, Query, Request  # noqa: TID253
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response  # noqa: TID253
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer  # noqa: TID253
from fastapi.staticfiles import StaticFiles  # noqa: TID253

from medic import config, db
from medic.view import PAGE, URL_PREFIX, report

STATIC = Path(__file__).parent / "static"
MAX_WINDOW_DAYS = 366
log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False)


async def current_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Any:  # noqa: ANN401 (Airflow's user type; FastAPI reads these annotations at run time, and the api-server's modules load only inside)
    """Airflow's own resolution of the caller: 401 without a valid token or session cookie."""
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, None, credentials)


def readable_dags(user: Annotated[Any, Depends(current_user)]) -> set[str] | None:  # noqa: ANN401 (as current_user)
    """The DAG ids the caller may read (incidents of any other DAG are not shown), or None for a
    caller who may read every DAG: they also see incidents of DAGs Airflow no longer knows."""
    from airflow.api_fastapi.app import get_auth_manager

    auth_manager = get_auth_manager()
    if auth_manager.is_authorized_dag(method="GET", user=user):
        return None
    return auth_manager.get_authorized_dag_ids(user=user, method="GET")


Readable = Annotated[set[str] | None, Depends(readable_dags)]


@cache
def ui_base() -> str:
    """The path Airflow's UI is served under (``[api] base_url``), for the links the API returns."""
    return urlparse(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


def _connect() -> psycopg.Connection:
    try:
        return db.connect(
            config.get("conn_id"), application_name="medic-view", connect_timeout=5, statement_timeout_ms=15000
        )
    except Exception as exc:
        log.warning("medic view: medic's database is unreachable: %s", exc)
        raise HTTPException(503, "medic's database is unreachable; try again shortly") from exc


def create_app() -> FastAPI:
    app = FastAPI(
        title="airflow-medic incidents",
        description="Read-only: medic's incidents, diagnoses, decisions and verified remediations.",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(psycopg.errors.UndefinedTable)
    @app.exception_handler(psycopg.errors.UndefinedColumn)
    async def schema_behind(_request: Request, exc: psycopg.Error) -> JSONResponse:
        log.warning("medic view: medic's schema is older than this code: %s", exc)
        return JSONResponse({"detail": "medic's schema is older than this version: run `medic migrate`"}, 503)

    @app.get("/api/incidents", response_model=report.IncidentPage)
    def incidents(
        readable: Readable,
        status: Annotated[str | None, Query(description="incident status")] = None,
        error_class: Annotated[str | None, Query(description=f"diagnosed class, or {report.UNDIAGNOSED}")] = None,
        dag_id: Annotated[str | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=report.MAX_PAGE)] = 25,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> report.IncidentPage:
        if status and status not in report.STATUSES:
            raise HTTPException(422, f"unknown status {status!r}; one of {', '.join(report.STATUSES)}")
        filters = report.Filters(status=status or None, error_class=error_class or None, dag_id=dag_id or None)
        with _connect() as conn:
            return report.list_incidents(
                conn, filters, limit=limit, offset=offset, readable_dags=readable, ui_base=ui_base()
            )

    @app.get("/api/incidents/{incident_id}", response_model=report.IncidentDetail)
    def incident(incident_id: int, readable: Readable) -> report.IncidentDetail:
        with _connect() as conn:
            detail = report.incident_detail(conn, incident_id, readable_dags=readable, ui_base=ui_base())
        if detail is None:
            raise HTTPException(404, f"no incident {incident_id} that you may read")
        return detail

    @app.get("/api/summary", response_model=report.Summary)
    def summary(
        readable: Readable,
        days: Annotated[int, Query(ge=1, le=MAX_WINDOW_DAYS, description="the window: the last N days")] = 7,
        until: Annotated[datetime | None, Query(description="the window's end (default now)")] = None,
    ) -> report.Summary:
        end = until or datetime.now(timezone.utc)
        end = end.replace(tzinfo=timezone.utc) if end.tzinfo is None else end.astimezone(timezone.utc)
        # Whole UTC days, so the chart's first bar is not a partial day.
        start = datetime.combine((end - timedelta(days=days - 1)).date(), datetime.min.time(), timezone.utc)
        with _connect() as conn:
            return report.summary(conn, since=start, until=end, readable_dags=readable)

    @app.get("/api/filters")
    def filters(readable: Readable) -> dict[str, list[str]]:
        with _connect() as conn:
            return report.filter_choices(conn, readable)

    @app.get(PAGE, include_in_schema=False)
    async def page(request: Request) -> Response:
        """The page; without a session it sends the browser to Airflow's login and back."""
        try:
            await current_user(request, await _bearer(request))
        except HTTPException:
            from airflow.api_fastapi.app import get_auth_manager

            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
        return FileResponse(STATIC / "incidents.html", headers={"Cache-Control": "no-store"})

    return app


@cache
def plugin_app() -> dict[str, Any]:
    """The ``fastapi_apps`` entry of medic's plugin; built once, on first use."""
    return {"app": create_app(), "url_prefix": URL_PREFIX, "name": "medic incidents"}
