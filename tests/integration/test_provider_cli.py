"""medic as an installed Airflow provider, seen through Airflow's own command line.

Airflow runs in subprocesses with an ``AIRFLOW_HOME`` of their own (a temporary folder whose
``airflow.cfg`` sets one ``[medic]`` key), so nothing here touches a stack or the developer's
Airflow home. Each command loads Airflow (about 10 to 30 s on a loaded two-core machine).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from medic import provider

if TYPE_CHECKING:
    from collections.abc import Iterator

AIRFLOW = Path(sys.executable).with_name("airflow")
#: set in the temporary airflow.cfg, and in the environment: both must reach medic's settings
FROM_CFG = ("llm_queue", "queue_from_airflow_cfg")
FROM_ENV = ("max_claim_attempts", "9")


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("airflow-home")
    (home / "airflow.cfg").write_text(f"[medic]\n{FROM_CFG[0]} = {FROM_CFG[1]}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_HOME"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
            f"AIRFLOW__MEDIC__{FROM_ENV[0].upper()}": FROM_ENV[1],
            "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        }
    )
    yield env


def airflow(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(AIRFLOW), *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"airflow {' '.join(args)}: {done.stderr[-3000:]}"
    return done.stdout


def test_airflow_lists_medic_among_its_providers(airflow_env: dict[str, str]) -> None:
    out = airflow(airflow_env, "providers", "list")
    rows = {line.split("|")[0].strip(): line for line in out.splitlines() if "|" in line}
    assert "apache-airflow-providers-openlineage" in rows  # the table was read
    assert provider.PACKAGE_NAME in rows, out[-3000:]
    assert rows[provider.PACKAGE_NAME].split("|")[-1].strip() == provider.get_provider_info()["versions"][0]


def test_airflow_answers_a_medic_setting_with_its_declared_default(airflow_env: dict[str, str]) -> None:
    out = airflow(airflow_env, "config", "get-value", "medic", "conn_id")
    assert out.strip() == provider.DEFAULTS["conn_id"] == "medic_db"


def test_airflow_lists_every_medic_key_with_its_description_and_value(airflow_env: dict[str, str]) -> None:
    out = airflow(airflow_env, "config", "list", "--section", "medic", "--include-descriptions", "--show-values")
    values = dict(re.findall(r"^(\w+) = (.*)$", out, re.M))
    assert set(values) == set(provider.OPTIONS), set(values) ^ set(provider.OPTIONS)
    for key, option in provider.OPTIONS.items():
        first_line = option["description"].strip().splitlines()[0]
        assert f"# {first_line}" in out, key
    expected = {**provider.DEFAULTS, FROM_CFG[0]: FROM_CFG[1], FROM_ENV[0]: FROM_ENV[1]}
    assert {k: v.strip() for k, v in values.items()} == expected


def test_in_an_airflow_process_medic_reads_airflows_configuration(airflow_env: dict[str, str]) -> None:
    """Where Airflow's configuration is loaded, medic.config reads through it: airflow.cfg counts;
    where it is not (the medic command), the environment and the declared defaults do."""
    probe = (
        "import sys\n"
        "from medic import config\n"
        "before = (config.get('llm_queue'), config.get_int('max_claim_attempts'))\n"
        "import airflow.configuration\n"
        "after = (config.get('llm_queue'), config.get_int('max_claim_attempts'), config.get('conn_id'))\n"
        "print(before, after)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=airflow_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    before = (provider.DEFAULTS["llm_queue"], int(FROM_ENV[1]))
    after = (FROM_CFG[1], int(FROM_ENV[1]), provider.DEFAULTS["conn_id"])
    assert done.stdout.strip().splitlines()[-1] == f"{before} {after}"
