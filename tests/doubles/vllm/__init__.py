"""TEST DOUBLE of vLLM's offline API (see tests/doubles/README.md). Not vLLM."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from vllm.sampling_params import SamplingParams, StructuredOutputsParams

__all__ = ["LLM", "SamplingParams", "StructuredOutputsParams"]
IS_TEST_DOUBLE = True


def _log(entry: dict[str, Any]) -> None:
    path = os.environ.get("MEDIC_VLLM_DOUBLE_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")


@dataclass
class CompletionOutput:
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class RequestOutput:
    prompt: str
    outputs: list[CompletionOutput] = field(default_factory=list)


class LLM:
    def __init__(self, model: str, **kwargs: Any) -> None:
        from medic.llm.base import GenerationSettings
        from medic.llm.cpu import CpuBackend

        _log({"call": "LLM", "model": model, **kwargs})
        self._settings = GenerationSettings(backend="cpu", model=model)
        self._cpu = CpuBackend(self._settings)

    def generate(self, prompts: list[str], sampling_params: SamplingParams, use_tqdm: bool = True) -> list:
        structured = sampling_params.structured_outputs
        _log(
            {
                "call": "generate",
                "prompts": len(prompts),
                "temperature": sampling_params.temperature,
                "max_tokens": sampling_params.max_tokens,
                "schema_title": (structured.json or {}).get("title") if structured else None,
                "disable_any_whitespace": structured.disable_any_whitespace if structured else None,
            }
        )
        if structured is None or structured.json is None:
            raise ValueError("double: only structured JSON generation is implemented")
        self._cpu.settings = self._settings.__class__(
            backend="cpu",
            model=self._settings.model,
            max_new_tokens=sampling_params.max_tokens,
            temperature=sampling_params.temperature,
        )
        generations = self._cpu.generate(prompts, structured.json, time.monotonic() + 600)
        return [
            RequestOutput(p, [CompletionOutput(g.text or "", [0] * g.tokens, "stop" if g.error is None else "length")])
            for p, g in zip(prompts, generations, strict=True)
        ]
