"""The backend protocol, its plain-data types, and the factory that picks a backend by name.

Backends (one module each, imported only when chosen, so a vendor SDK is never loaded by
importing this module):

- ``llamacpp`` (``medic.llm.llamacpp``): llama.cpp on the CPU, a GGUF model, output
  constrained by a grammar built from the JSON schema. The CPU choice: on the same 1.5B
  Q4_K_M file, measured against transformers (which dequantises it to float32), about 5x less
  CPU per token, 2.0 GB instead of 8.8 GB resident, and a 3 s load instead of 85 s.
- ``cpu`` (``medic.llm.cpu``): transformers with grammar-constrained decoding by xgrammar
  (the engine vLLM uses), for a model directory in Hugging Face format.
- ``vllm`` (``medic.llm.vllm``): vLLM's offline engine with structured outputs, on a GPU.
- ``openai`` (``medic.llm.openai``): any OpenAI-compatible server with a ``response_format``
  JSON schema.

A backend never validates and never decides: it returns text or an error per prompt, and
the Airflow side validates every output against the contract.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

BACKENDS = ("none", "llamacpp", "cpu", "vllm", "openai")

# where each backend lives: imported by make_backend only when that backend is chosen
_IMPLEMENTATIONS = {
    "llamacpp": ("medic.llm.llamacpp", "LlamaCppBackend"),
    "cpu": ("medic.llm.cpu", "CpuBackend"),
    "vllm": ("medic.llm.vllm", "VllmBackend"),
    "openai": ("medic.llm.openai", "OpenAIBackend"),
}

# the error of a local backend that ran out of tokens or time before the JSON closed
INCOMPLETE = "stopped before the answer was complete (token or time limit)"


@dataclass(frozen=True)
class GenerationSettings:
    """Everything a backend needs, as plain data: it travels from Airflow to the worker as a dict."""

    backend: str = "none"
    model: str = ""  # a local path, a packaged model's name (medic.llm.models), or a served model's name
    max_new_tokens: int = 768
    temperature: float = 0.0
    timeout_seconds: float = 300.0  # the whole batch, model load included
    base_url: str = ""  # openai: the server's /v1 URL
    api_key: str = field(default="", repr=False)  # openai: never logged, never in XCom
    device: str = "auto"  # cpu backend: cpu (the only choice it makes on a CPU-only worker)
    gpu_memory_utilization: float = 0.85  # vllm
    max_model_len: int = 4096  # vllm, llamacpp: the context window (prompt and answer)
    cache_dir: str = ""  # where packaged models are assembled; empty: $MEDIC_MODEL_CACHE or ~/.cache/medic
    threads: int = 0  # llamacpp, cpu: CPU threads; 0: one fewer than the cores this process may use

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> GenerationSettings:
        """Settings from a request dict; unknown keys and backends are refused, never ignored."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown generation settings: {sorted(unknown)}")
        settings = cls(**data)
        if settings.backend not in BACKENDS:
            raise ValueError(f"backend {settings.backend!r} is not one of {BACKENDS}")
        return settings


@dataclass
class Generation:
    """One prompt's outcome: the text (possibly incomplete), or why there is none."""

    text: str | None
    error: str | None = None
    tokens: int = 0


@runtime_checkable
class Backend(Protocol):
    """A loaded model: a batch of prompts and a JSON schema in, one Generation per prompt out.

    ``deadline`` is a ``time.monotonic()`` value: a backend stops generating past it and
    reports what it has as incomplete rather than running on.
    """

    name: str

    def generate(self, prompts: Sequence[str], schema: Mapping[str, Any], deadline: float) -> list[Generation]: ...


def make_backend(settings: GenerationSettings) -> Backend:
    """Load the backend ``settings.backend`` names; its libraries are imported only now."""
    try:
        module_name, class_name = _IMPLEMENTATIONS[settings.backend]
    except KeyError:
        raise ValueError(f"backend {settings.backend!r} does not generate") from None
    backend_class: Callable[[GenerationSettings], Backend] = getattr(importlib.import_module(module_name), class_name)
    return backend_class(settings)


def schema_json(schema: Mapping[str, Any]) -> str:
    """A schema's canonical text: the key grammars are compiled and cached under."""
    return json.dumps(schema, sort_keys=True)


def threads(settings: GenerationSettings) -> int:
    """CPU threads to use: the setting, else one fewer than the cores this process may run on.

    A core is left to the rest of the worker (its supervisor, heartbeats, the next task): with
    every core taken, llama.cpp's and torch's OpenMP threads spin-wait on each other whenever
    anything else runs (measured on 2 busy cores: 2 threads 10x slower than 1).
    """
    if settings.threads > 0:
        return settings.threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)
