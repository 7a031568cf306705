"""The generation worker: what runs in the isolated environment, on the ``llm`` queue.

``run(request) -> response`` takes and returns plain data, so Airflow can call it through
``@task.external_python`` (pickled arguments, another interpreter) without either side
importing the other's libraries. It never raises for a bad batch: every prompt gets a text
or an error, and the caller escalates the errors. A hard deadline (SIGALRM in the worker's
main thread) bounds model loading and generation together.

Also runnable as ``python -m medic.llm.worker < request.json`` (bench, debugging).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, NoReturn

from medic.llm.base import Backend, Generation, GenerationSettings, make_backend

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from types import FrameType

_BACKENDS: dict[GenerationSettings, Backend] = {}  # one loaded model per process and settings


class GenerationTimeout(BaseException):
    """A BaseException, like KeyboardInterrupt: libraries that catch Exception (lazy imports do)
    must not swallow the deadline."""


def environment() -> dict[str, Any]:
    """Which interpreter ran the batch: the evidence that generation really is isolated."""
    packages: dict[str, str | None] = {}
    for name in ("llama-cpp-python", "torch", "transformers", "xgrammar", "vllm", "apache-airflow"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "python": sys.executable,
        "prefix": sys.prefix,
        "pid": os.getpid(),
        "airflow_importable": importlib.util.find_spec("airflow") is not None,
        "packages": packages,
    }


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise GenerationTimeout after ``seconds``: in the main thread, and only when no one else's
    alarm is armed (inside an Airflow task, execution_timeout owns SIGALRM); elsewhere the
    backend's own limits apply (transformers' max_time, the HTTP timeout)."""
    busy = signal.getitimer(signal.ITIMER_REAL)[0] > 0
    if threading.current_thread() is not threading.main_thread() or seconds <= 0 or busy:
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> NoReturn:
        raise GenerationTimeout(f"generation exceeded {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(request: Mapping[str, Any]) -> dict[str, Any]:  # noqa: C901 (one batch's whole story, kept in one place)
    started = time.monotonic()
    prompts = list(request.get("prompts") or [])
    ids = [p.get("incident_id") for p in prompts]
    response: dict[str, Any] = {"environment": environment(), "results": [], "seconds": 0.0}

    def fail_all(reason: str) -> dict[str, Any]:
        response["results"] = [{"incident_id": i, "text": None, "error": reason} for i in ids]
        response["seconds"] = round(time.monotonic() - started, 3)
        return response

    try:
        settings = GenerationSettings.from_mapping(request.get("settings") or {})
    except (TypeError, ValueError) as exc:
        return fail_all(f"bad generation settings: {exc}")
    response.update(backend=settings.backend, model=settings.model)
    if not prompts:
        return fail_all("")
    if settings.backend == "vllm" and response["environment"]["airflow_importable"]:
        return fail_all(
            "the vllm backend runs only in its isolated environment ([medic] llm_python), not beside Airflow"
        )
    deadline = started + settings.timeout_seconds
    try:
        with _deadline(settings.timeout_seconds):
            backend = _BACKENDS.get(settings)
            if backend is None:
                backend = _BACKENDS[settings] = make_backend(settings)
            response["load_seconds"] = round(time.monotonic() - started, 3)
            generations: list[Generation] = backend.generate(
                [p["prompt"] for p in prompts], request["schema"], deadline
            )
    except (GenerationTimeout, Exception) as exc:  # a backend that is down or broken escalates; it never guesses
        # past the deadline whatever was raised is the timeout's doing (an alarm inside an import
        # can surface later as another error), so say so
        if isinstance(exc, GenerationTimeout) or time.monotonic() > deadline:
            return fail_all(f"generation exceeded {settings.timeout_seconds:g}s")
        if isinstance(exc, ImportError):
            return fail_all(f"the {settings.backend} backend is not installed in {sys.executable}: {exc}")
        return fail_all(f"{settings.backend} backend failed: {type(exc).__name__}: {exc}"[:500])
    if time.monotonic() > deadline:  # an alarm can land where it is not raised (C code): check the clock too
        return fail_all(f"generation exceeded {settings.timeout_seconds:g}s")
    if len(generations) != len(prompts):
        return fail_all(f"backend returned {len(generations)} outputs for {len(prompts)} prompts")
    response["results"] = [
        {"incident_id": i, "text": g.text, "error": g.error, "tokens": g.tokens}
        for i, g in zip(ids, generations, strict=True)
    ]
    response["seconds"] = round(time.monotonic() - started, 3)
    return response


def main() -> int:
    response = run(json.load(sys.stdin))
    json.dump(response, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
