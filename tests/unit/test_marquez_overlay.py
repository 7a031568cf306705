"""The Marquez compose overlay is consistent with itself and with what the demo and README say.

No Docker engine runs here, so the overlay is not started by the tests; this catches the drift
that would break it: a mounted file that moved, a database host that is not a service, ports
that differ from the ones medic tells users to open.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_overlay_mounts_a_config_that_points_at_its_own_database() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.marquez.yaml").read_text())
    services = compose["services"]
    assert {"marquez-api", "marquez-db", "marquez-web"} <= set(services)
    api = services["marquez-api"]
    source, target = api["volumes"][0].split(":")[:2]
    assert target == api["environment"]["MARQUEZ_CONFIG"]
    config = yaml.safe_load((ROOT / source).read_text())
    db_host = config["db"]["url"].split("//")[1].split(":")[0]
    assert db_host == api["environment"]["POSTGRES_HOST"] and db_host in services
    assert config["db"]["user"] == services["marquez-db"]["environment"]["POSTGRES_USER"]
    assert "5000:5000" in api["ports"] and "3000:3000" in services["marquez-web"]["ports"]
    assert services["marquez-web"]["environment"]["MARQUEZ_HOST"] == "marquez-api"


def test_the_stack_wraps_its_transport_so_every_event_is_scrubbed(monkeypatch, tmp_path) -> None:
    from openlineage.client.transport import get_default_factory

    from medic_dev.stack import Stack

    stack = Stack(home=tmp_path, root=ROOT)
    transport = stack.lineage_transport()
    assert transport["type"] == "medic.lineage.transport.ScrubbingTransport"
    assert transport["transport"] == {
        "type": "file",
        "log_file_path": str(tmp_path / "lineage" / "events.jsonl"),
        "append": True,
    }
    monkeypatch.setenv("MEDIC_OPENLINEAGE_URL", "http://localhost:5000")
    inner = stack.lineage_transport()["transport"]
    assert (inner["type"], inner["url"], inner["endpoint"]) == ("http", "http://localhost:5000", "api/v1/lineage")
    # the client builds it from the JSON the provider reads from AIRFLOW__OPENLINEAGE__TRANSPORT
    built = get_default_factory().create(stack.lineage_transport())
    assert built.kind == "medic_scrubbing" and built.inner.kind == "http"
