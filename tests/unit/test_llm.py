"""medic.llm without a model: the package's shape, settings, packaged weights, grammar pieces."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import pytest

from medic.contract import Diagnosis
from medic.llm import models
from medic.llm.base import BACKENDS, GenerationSettings, make_backend
from medic.llm.llamacpp import grammar_schema, integer_ranges

LLM = Path(models.__file__).parent
HEAVY = ("torch", "transformers", "xgrammar", "vllm", "llama_cpp", "httpx")


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (module level and inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _module_level_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_backends_depend_on_base_and_base_on_no_backend() -> None:
    """No cycles: base knows backends only by name; each backend module imports base, never a sibling."""
    backends = {"cpu", "llamacpp", "vllm", "openai"}
    assert not {m for m in _imports(LLM / "base.py") if m.startswith("medic.llm")}
    for name in backends:
        siblings = {m for m in _imports(LLM / f"{name}.py") if m.startswith("medic.llm.")}
        assert "medic.llm.base" in siblings and not siblings & {f"medic.llm.{b}" for b in backends}, name
    assert not (LLM / "backends.py").exists()


def test_no_vendor_library_is_imported_at_module_level() -> None:
    for path in LLM.glob("*.py"):
        heavy = {m for m in _module_level_imports(path) if m.split(".")[0] in HEAVY}
        assert not heavy, f"{path.name} imports {heavy} at module level"
    # and importing every module loads none of them
    code = (
        "import sys, medic.llm.base, medic.llm.cpu, medic.llm.llamacpp, medic.llm.vllm, medic.llm.openai,"
        " medic.llm.worker, medic.llm.models; print([m for m in " + repr(HEAVY) + " if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_settings_refuse_unknown_keys_and_backends() -> None:
    assert GenerationSettings.from_mapping({"backend": "llamacpp", "threads": 2}).threads == 2
    with pytest.raises(ValueError, match="unknown generation settings"):
        GenerationSettings.from_mapping({"backend": "cpu", "gpu": True})
    with pytest.raises(ValueError, match="is not one of"):
        GenerationSettings.from_mapping({"backend": "llama"})
    with pytest.raises(ValueError, match="does not generate"):
        make_backend(GenerationSettings(backend="none"))
    assert {"none", "llamacpp", "cpu", "vllm", "openai"} == set(BACKENDS)


@pytest.mark.parametrize(("low", "high"), [(30, 86400), (0, 0), (0, 9), (5, 123), (99, 101), (1, 1000), (7, 7000)])
def test_integer_ranges_spell_exactly_the_integers_in_bounds(low: int, high: int) -> None:
    spelled = re.compile("|".join("".join(f"[{r}]" for r in alt) for alt in integer_ranges(low, high)))
    candidates = [str(n) for n in range(0, 2 * high + 20)] + ["0" + str(low), "00", "-" + str(low), ""]
    matched = {c for c in candidates if spelled.fullmatch(c)}
    assert matched == {str(n) for n in range(low, high + 1)}


def test_grammar_schema_orders_every_property_and_still_matches_the_contract() -> None:
    contract = Diagnosis.model_json_schema()
    schema = grammar_schema(contract)
    assert schema["required"] == list(contract["properties"])  # schema order: evidence before action
    assert contract["required"] != schema["required"]  # the contract itself is untouched
    answer = {
        "error_class": "timeout",
        "transience": "transient",
        "root_cause": "r",
        "evidence": [],
        "action": "retry",
        "action_params": {},
        "confidence": 0.5,
        "explanation": "e",
        "similar_incidents": [],
    }
    assert set(answer) == set(schema["required"])
    Diagnosis.model_validate_json(json.dumps(answer))


# ---- packaged weights ------------------------------------------------------------------------
def _installed_files(count: int) -> tuple[tuple[str, str], ...]:
    """Real files of a real installed distribution, as (distribution, relative path) parts."""
    files = [f for f in distribution("pydantic").files or [] if str(f).endswith(".py")][:count]
    assert len(files) == count
    return tuple(("pydantic", str(f)) for f in files)


def _packaged(parts: tuple[tuple[str, str], ...], digest: str) -> models.PackagedModel:
    size = sum(models.part_path(d, r).stat().st_size for d, r in parts)
    return models.PackagedModel("test-model", "test.gguf", parts, digest, size, "requirements-test.txt")


def test_a_split_model_is_assembled_once_in_order_and_verified_at_every_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = _installed_files(3)
    whole = b"".join(models.part_path(d, r).read_bytes() for d, r in parts)
    model = _packaged(parts, hashlib.sha256(whole).hexdigest())
    monkeypatch.setitem(models.PACKAGED, model.name, model)

    path = Path(models.resolve("test-model", str(tmp_path)))
    assert path == tmp_path / "test.gguf" and path.read_bytes() == whole
    assert [p.name for p in tmp_path.iterdir()] == ["test.gguf"]  # no temporary file left
    assert models.resolve("test-model", str(tmp_path)) == str(path)  # second load: verified, same file

    path.chmod(0o644)
    path.write_bytes(whole[:-1] + b"!")  # damaged in place
    with pytest.raises(models.ModelError, match="refusing to load it"):
        models.resolve("test-model", str(tmp_path))


def test_parts_that_do_not_hash_right_are_never_installed_as_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _packaged(_installed_files(2), "0" * 64)
    monkeypatch.setitem(models.PACKAGED, model.name, model)
    with pytest.raises(models.ModelError, match=r"expected 0{64}; refusing"):
        models.resolve("test-model", str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_a_missing_part_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = (*_installed_files(1), ("medic-no-such-part", "data/part02.bin"))
    model = models.PackagedModel("test-model", "t.gguf", parts, "0" * 64, 1, "requirements-test.txt")
    monkeypatch.setitem(models.PACKAGED, model.name, model)
    with pytest.raises(models.ModelError, match="medic-no-such-part is not installed; install requirements-test"):
        models.resolve("test-model", str(tmp_path))


def test_a_path_or_a_served_name_is_not_a_packaged_model() -> None:
    assert models.resolve("/models/qwen.gguf") == "/models/qwen.gguf"
    assert models.resolve("Qwen/Qwen2.5-Coder-1.5B-Instruct") == "Qwen/Qwen2.5-Coder-1.5B-Instruct"


def test_the_cache_directory_follows_setting_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIC_MODEL_CACHE", "/srv/medic-models")
    assert models.cache_dir() == Path("/srv/medic-models")
    assert models.cache_dir("/data/m") == Path("/data/m")
    monkeypatch.delenv("MEDIC_MODEL_CACHE")
    assert models.cache_dir() == Path.home() / ".cache" / "medic" / "models"
