"""Generation backends behind one interface: a batch of prompts and a JSON schema in, texts out.

- ``cpu``: transformers with grammar-constrained decoding by xgrammar (the engine vLLM uses),
  for machines without a GPU.
- ``vllm``: vLLM's offline engine with ``StructuredOutputsParams(json=schema)``; prefix caching on.
- ``openai``: any OpenAI-compatible server (``vllm serve``, ...) with a ``response_format``
  JSON schema; the batch is sent concurrently and the server batches it.

A backend never validates and never decides: it returns text or an error per prompt, and
the caller validates every output against the contract. Heavy imports live inside methods.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

BACKENDS = ("none", "cpu", "vllm", "openai")


@dataclass(frozen=True)
class GenerationSettings:
    backend: str = "none"
    model: str = ""  # a local path or a model name the backend can load
    max_new_tokens: int = 768
    temperature: float = 0.0
    timeout_seconds: float = 300.0  # the whole batch, model load included
    base_url: str = ""  # openai: the server's /v1 URL
    api_key: str = field(default="", repr=False)  # openai: never logged, never in XCom
    device: str = "auto"  # cpu backend: cpu (the only choice it makes on a CPU-only worker)
    gpu_memory_utilization: float = 0.85  # vllm
    max_model_len: int = 4096  # vllm

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> GenerationSettings:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown generation settings: {sorted(unknown)}")
        settings = cls(**data)
        if settings.backend not in BACKENDS:
            raise ValueError(f"backend {settings.backend!r} is not one of {BACKENDS}")
        return settings


@dataclass
class Generation:
    text: str | None
    error: str | None = None
    tokens: int = 0


class Backend(Protocol):
    name: str

    def generate(self, prompts: Sequence[str], schema: Mapping[str, Any], deadline: float) -> list[Generation]: ...


class OpenAIBackend:
    """An OpenAI-compatible chat completions endpoint with a JSON-schema response format."""

    name = "openai"

    def __init__(self, settings: GenerationSettings, transport: Any = None) -> None:
        if not settings.base_url:
            raise ValueError("the openai backend needs a base URL (the Connection's host)")
        self.settings = settings
        self._transport = transport  # tests hand in an httpx transport

    def _body(self, prompt: str, schema: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "model": self.settings.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_new_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "diagnosis", "schema": dict(schema), "strict": True},
            },
        }

    def generate(self, prompts: Sequence[str], schema: Mapping[str, Any], deadline: float) -> list[Generation]:
        import asyncio

        import httpx

        headers = {"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {}
        timeout = max(1.0, deadline - time.monotonic())

        async def one(client: httpx.AsyncClient, prompt: str) -> Generation:
            try:
                response = await client.post("/chat/completions", json=self._body(prompt, schema))
            except httpx.HTTPError as exc:
                return Generation(None, f"openai backend unreachable: {type(exc).__name__}: {exc}"[:500])
            if response.status_code != 200:
                return Generation(None, f"openai backend answered {response.status_code}: {response.text[:300]}")
            try:
                data = response.json()
                choice = data["choices"][0]
                text = choice["message"]["content"]
                tokens = int(data.get("usage", {}).get("completion_tokens", 0))
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                return Generation(None, f"openai backend sent an unexpected body: {exc}"[:300])
            if choice.get("finish_reason") == "length":
                return Generation(text, "stopped at max_new_tokens", tokens)
            return Generation(text, None, tokens)

        async def all_of_them() -> list[Generation]:
            async with httpx.AsyncClient(
                base_url=self.settings.base_url.rstrip("/"), headers=headers, timeout=timeout, transport=self._transport
            ) as client:
                return list(await asyncio.gather(*(one(client, p) for p in prompts)))

        return asyncio.run(all_of_them())


def _vllm_api() -> tuple[Any, Any, Any]:
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    return LLM, SamplingParams, StructuredOutputsParams


class VllmBackend:
    """vLLM's offline engine: one ``generate`` call for the whole batch, prefix caching on."""

    name = "vllm"

    def __init__(self, settings: GenerationSettings, api: Callable[[], tuple[Any, Any, Any]] = _vllm_api) -> None:
        self.settings = settings
        self._api = api
        self._engine: Any = None

    def engine(self) -> Any:
        if self._engine is None:
            llm_class, _, _ = self._api()
            self._engine = llm_class(
                model=self.settings.model,
                enable_prefix_caching=True,
                gpu_memory_utilization=self.settings.gpu_memory_utilization,
                max_model_len=self.settings.max_model_len,
                seed=0,
            )
        return self._engine

    def generate(self, prompts: Sequence[str], schema: Mapping[str, Any], deadline: float) -> list[Generation]:
        _, sampling_params, structured = self._api()
        params = sampling_params(
            temperature=self.settings.temperature,
            max_tokens=self.settings.max_new_tokens,
            structured_outputs=structured(json=dict(schema), disable_any_whitespace=True),
        )
        outputs = self.engine().generate(list(prompts), params, use_tqdm=False)
        results = []
        for output in outputs:
            completion = output.outputs[0]
            error = "stopped at max_new_tokens" if getattr(completion, "finish_reason", None) == "length" else None
            results.append(Generation(completion.text, error, len(getattr(completion, "token_ids", []) or [])))
        return results


def make_backend(settings: GenerationSettings) -> Backend:
    if settings.backend == "cpu":
        from medic.llm.cpu import CpuBackend

        return CpuBackend(settings)
    if settings.backend == "vllm":
        return VllmBackend(settings)
    if settings.backend == "openai":
        return OpenAIBackend(settings)
    raise ValueError(f"backend {settings.backend!r} does not generate")


def schema_json(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True)
