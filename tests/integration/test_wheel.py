"""The wheel a deployment installs: the runtime package and its data, no development tooling.

Built offline from a copy of the project (pip with the installed setuptools, no index), so a
stale ``build/`` of the working tree cannot hide a packaging mistake. Takes several seconds:
an integration test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "include" / "medic"
LEFT_BEHIND = (".git", ".venv", ".venv-*", ".medic", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")
#: Development code: none of it may ship, wherever a mistake would put it.
DEV_PARTS = {"medic_dev", "tools", "tests", "dags", "plugins", "bench", "doubles"}
DEV_MODULES = {"stack", "examples", "evaluate", "rest_client", "tiny_model", "lineage_files", "conftest"}


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    source = tmp_path_factory.mktemp("project") / "airflow-medic"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*LEFT_BEHIND))
    out = source.parent / "wheels"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", ".", "-w", str(out)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = out.glob("airflow_medic-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def shipped(files: set[str], folder: str) -> set[str]:
    return {PurePosixPath(name).name for name in files if str(PurePosixPath(name).parent) == folder}


def test_the_wheel_holds_the_runtime_package(wheel_files: set[str]) -> None:
    modules = {str(path.relative_to(PACKAGE.parent).as_posix()) for path in PACKAGE.rglob("*.py")}
    assert len(modules) >= 30
    assert modules <= wheel_files
    assert "medic/py.typed" in wheel_files


def test_the_wheel_holds_no_development_code(wheel_files: set[str]) -> None:
    dev = sorted(
        name
        for name in wheel_files
        if DEV_PARTS & set(PurePosixPath(name).parts[:-1]) or PurePosixPath(name).stem in DEV_MODULES
    )
    assert dev == []
    top_level = {PurePosixPath(name).parts[0] for name in wheel_files}
    assert {part for part in top_level if not part.endswith(".dist-info")} == {"medic"}


@pytest.mark.parametrize(
    ("folder", "pattern"),
    [("diagnose/runbooks", "*.md"), ("lineage/schemas", "*.json"), ("view/static", "*"), ("migrations", "*.sql")],
)
def test_the_wheel_holds_the_package_data(wheel_files: set[str], folder: str, pattern: str) -> None:
    expected = {path.name for path in (PACKAGE / folder).glob(pattern) if path.is_file()}
    assert expected, f"nothing in include/medic/{folder} to ship"
    assert shipped(wheel_files, f"medic/{folder}") == expected
