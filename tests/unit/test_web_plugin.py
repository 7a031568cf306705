"""The plugin builds the incidents view's app only when Airflow asks for it (the api-server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"

PROBE = """
import sys
sys.path.insert(0, {plugins!r})
import medic_plugin
assert "medic.view.app" not in sys.modules, "the view's app was imported with the plugin"
assert "fastapi" not in sys.modules, "FastAPI was imported with the plugin"
(entry,) = medic_plugin.MedicPlugin.fastapi_apps
assert entry["url_prefix"] == "/medic" and entry["app"] is medic_plugin.MedicPlugin.fastapi_apps[0]["app"]
paths = {{route.path for route in entry["app"].routes}}
assert {{"/api/incidents", "/api/incidents/{{incident_id}}", "/api/summary", "/api/filters", "/ui/incidents"}} <= paths
(view,) = medic_plugin.MedicPlugin.external_views
assert view["href"] == "/medic/ui/incidents" and view["url_route"] == "medic-incidents"
print("ok")
"""


def test_the_app_is_built_on_first_use_not_when_a_task_loads_the_plugin() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(plugins=str(PLUGINS))], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
