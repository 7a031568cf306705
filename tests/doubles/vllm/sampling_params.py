"""TEST DOUBLE of ``vllm.sampling_params`` (see tests/doubles/README.md): the fields medic passes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class StructuredOutputsParams:
    json: dict[str, Any] | None = None
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    disable_any_whitespace: bool = False


@dataclass
class SamplingParams:
    temperature: float = 1.0
    max_tokens: int | None = 16
    structured_outputs: StructuredOutputsParams | None = None
    seed: int | None = None
