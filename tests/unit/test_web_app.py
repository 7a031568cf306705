"""The view's app without a server: bad parameters and an unreachable database get clear answers."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient

from medic.view import app as web


@pytest.fixture
def client(monkeypatch):
    app = web.create_app()
    app.dependency_overrides[web.readable_dags] = lambda: {"sales"}  # Airflow's auth: tested end to end

    def unreachable(*_args, **_kwargs):
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr("medic.db.connect", unreachable)
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize("path", ["/api/incidents", "/api/incidents/3", "/api/summary?days=30", "/api/filters"])
def test_an_unreachable_database_is_a_503_that_says_so(client, path) -> None:
    response = client.get(path)
    assert response.status_code == 503
    assert "unreachable" in response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/incidents?limit=0",
        "/api/incidents?limit=201",
        "/api/incidents?offset=-1",
        "/api/incidents?status=bogus",
        "/api/incidents/abc",
        "/api/summary?days=0",
        "/api/summary?days=367",
        "/api/summary?until=yesterday",
    ],
)
def test_bad_parameters_are_a_422_before_any_query(client, path) -> None:
    assert client.get(path).status_code == 422


def test_the_page_and_its_assets_are_served(client, monkeypatch) -> None:
    async def signed_in(*_args, **_kwargs):
        return object()

    monkeypatch.setattr(web, "current_user", signed_in)
    page = client.get("/ui/incidents")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert '<table id="incidents">' in page.text
    script = client.get("/static/incidents.js")
    assert script.status_code == 200 and "textContent" in script.text
    assert "innerHTML" not in script.text, "untrusted text must never become markup"
