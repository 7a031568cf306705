"""medic's provider info: valid for Airflow, and the one declaration of every ``[medic]`` key medic reads.

The keys medic reads are found in its source (ast): every call of ``medic.config``'s readers
(``get``, ``get_int``, ``get_float``, ``get_bool``) in the runtime package, the tools, the DAG
files and the plugin. A key read but not declared would raise (no default); a key declared but
never read is a setting that does nothing; a key read as a number but declared a string would be
shown wrongly on Airflow's configuration page.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import jsonschema
import pytest

from medic import config, provider
from medic.llm.base import BACKENDS

REPO = Path(__file__).resolve().parents[2]
#: where medic.config is used: the runtime package, the dev tools, the DAG files, the plugin
SOURCES = [REPO / "include" / "medic", REPO / "tools" / "medic_dev", REPO / "dags", REPO / "plugins"]
READERS = {"get": "string", "get_int": "integer", "get_float": "float", "get_bool": "boolean"}


def airflow_schema() -> dict:
    """Airflow's own provider_info.schema.json, found without importing Airflow (that loads its settings)."""
    spec = importlib.util.find_spec("airflow")
    assert spec is not None and spec.submodule_search_locations
    (schema,) = [
        path
        for location in spec.submodule_search_locations
        if (path := Path(location) / "provider_info.schema.json").is_file()
    ]
    return json.loads(schema.read_text())


def _module_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments: a key given by a constant (``TIMEOUT_KEY``)."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            found.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    return found


def _reader_names(tree: ast.Module, is_config: bool) -> tuple[set[str], dict[str, str]]:
    """Names bound to the module medic.config, and names bound to its readers (name -> reader)."""
    modules: set[str] = set()
    functions: dict[str, str] = {name: name for name in READERS} if is_config else {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "medic":
            modules |= {a.asname or a.name for a in node.names if a.name == "config"}
        elif isinstance(node, ast.ImportFrom) and node.module == "medic.config":
            functions |= {a.asname or a.name: a.name for a in node.names if a.name in READERS}
        elif isinstance(node, ast.Import):
            modules |= {a.asname for a in node.names if a.name == "medic.config" and a.asname}
    return modules, functions


def reads() -> dict[str, set[tuple[str, str]]]:
    """key -> {(declared type the reader implies, where)} for every read of a [medic] key."""
    found: dict[str, set[tuple[str, str]]] = {}
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            modules, functions = _reader_names(tree, path == REPO / "include" / "medic" / "config.py")
            constants = _module_constants(tree)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in modules:
                    reader = func.attr
                elif isinstance(func, ast.Name) and func.id in functions:
                    reader = functions[func.id]
                else:
                    continue
                if reader not in READERS:
                    continue
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    key = arg.value
                elif isinstance(arg, ast.Name) and arg.id in constants:
                    key = constants[arg.id]
                elif isinstance(arg, ast.Name) and path.name == "config.py" and arg.id == "key":
                    continue  # config's own readers pass their argument on
                else:
                    raise AssertionError(f"{where}: a [medic] key this test cannot read: {ast.unparse(arg)}")
                found.setdefault(key, set()).add((READERS[reader], where))
    return found


def test_the_provider_info_validates_against_airflows_schema() -> None:
    info = provider.get_provider_info()
    schema = airflow_schema()
    jsonschema.validate(info, schema)
    # Airflow's schema spells "additional_properties" for an option, so jsonschema lets any key
    # through there: checked here, against the keys the schema names
    allowed = set(schema["definitions"]["option"]["properties"])
    options = info["config"]["medic"]["options"]
    for key, option in options.items():
        assert set(option) <= allowed, (key, set(option) - allowed)
    # ProvidersManager refuses a provider whose package-name is not its distribution's name
    assert info["package-name"] == metadata.metadata("airflow-medic")["Name"]
    assert info["versions"][0] == metadata.version("airflow-medic")
    integrations = {i["integration-name"] for i in info["integrations"]}
    assert {t["integration-name"] for t in info["triggers"]} <= integrations


def test_a_broken_option_fails_the_schema() -> None:
    """The validation above can fail: an option with a type Airflow does not know is refused."""
    info = provider.get_provider_info()
    info["config"]["medic"]["options"]["conn_id"]["type"] = "text"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(info, airflow_schema())


def test_every_key_medic_reads_is_declared_and_every_declared_key_is_read() -> None:
    found = reads()
    # the reader finds reads in every form: a module attribute, config's own calls, a constant
    assert {"conn_id", "claim_lease_seconds", "skip_dag_ids", "retry_policy_timeout_seconds"} <= set(found)
    declared = set(provider.OPTIONS)
    missing = {key: sorted(w for _, w in found[key]) for key in set(found) - declared}
    assert missing == {}, f"read but not declared in medic.provider.OPTIONS: {missing}"
    assert declared - set(found) == set(), "declared but never read"
    assert set(provider.get_provider_info()["config"]["medic"]["options"]) == declared


def test_each_key_is_declared_with_the_type_it_is_read_as() -> None:
    wrong = []
    for key, uses in reads().items():
        declared = provider.OPTIONS[key]["type"]
        for kind, where in uses:
            if kind != "string" and kind != declared:
                wrong.append(f"{where}: {key} read as {kind}, declared {declared}")
    assert wrong == []


def test_each_default_parses_as_its_declared_type() -> None:
    for key, option in provider.OPTIONS.items():
        default, kind = option["default"], option["type"]
        if kind == "integer":
            int(default)
        elif kind == "float":
            float(default)
        elif kind == "boolean":
            assert default in {"true", "false"}, key
        assert option["description"].strip(), key
        assert option["version_added"], key


def test_the_backend_option_names_every_backend() -> None:
    description = provider.OPTIONS["llm_backend"]["description"]
    assert [b for b in BACKENDS if b not in description] == []
    assert provider.OPTIONS["llm_backend"]["default"] in BACKENDS


def test_without_airflow_a_key_reads_the_environment_then_the_declared_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "airflow.configuration", raising=False)
    monkeypatch.delenv("AIRFLOW__MEDIC__LOOP_GUARD_MAX", raising=False)
    assert config.get_int("loop_guard_max") == int(provider.DEFAULTS["loop_guard_max"]) == 3
    monkeypatch.setenv("AIRFLOW__MEDIC__LOOP_GUARD_MAX", "7")
    assert config.get_int("loop_guard_max") == 7
    with pytest.raises(KeyError):
        config.get("no_such_medic_setting")


def test_the_declared_classes_are_what_airflow_expects() -> None:
    """Airflow imports each declared path: the plugin, the triggers' module, the notifiers."""
    from airflow.plugins_manager import AirflowPlugin
    from airflow.sdk import BaseNotifier
    from airflow.triggers.base import BaseEventTrigger

    info = provider.get_provider_info()
    for plugin in info["plugins"]:
        module, _, name = plugin["plugin-class"].rpartition(".")
        assert issubclass(getattr(importlib.import_module(module), name), AirflowPlugin)
    (triggers,) = [m for t in info["triggers"] for m in t["python-modules"]]
    module = importlib.import_module(triggers)
    for name in ("FailureEventTrigger", "RunbookChangeTrigger", "VerifiedOutcomeTrigger"):
        assert issubclass(getattr(module, name), BaseEventTrigger), name
    assert info["notifications"], "medic's approval notifier is declared"
    for path in info["notifications"]:
        module, _, name = path.rpartition(".")
        assert issubclass(getattr(importlib.import_module(module), name), BaseNotifier), path
    # the bundle's plugin file is the same class, so Airflow never sees two plugins named medic
    sys.path.insert(0, str(REPO / "plugins"))
    try:
        bundle_plugin = importlib.import_module("medic_plugin")
    finally:
        sys.path.remove(str(REPO / "plugins"))
    assert bundle_plugin.MedicPlugin is importlib.import_module("medic.plugin").MedicPlugin


def test_the_provider_info_and_settings_load_without_airflow() -> None:
    """The medic command and the listener read settings before (or without) Airflow's configuration."""
    probe = (
        "import sys\n"
        "from medic import config, provider\n"
        "provider.get_provider_info(); config.get('conn_id')\n"
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
