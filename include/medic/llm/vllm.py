"""The ``vllm`` backend: vLLM's offline engine on a GPU, one ``generate`` call per batch.

Structured outputs (``StructuredOutputsParams(json=schema)``, xgrammar inside vLLM) keep
every answer inside the schema; prefix caching computes the shared prompt prefix once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medic.llm.base import Generation, GenerationSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence


def _vllm_api() -> tuple[Any, Any, Any]:
    """vLLM's classes, imported only when the backend is used (tests put a double on the path)."""
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
        """The engine, created on first use (model load is the slow part)."""
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
        """The whole batch in one call; an answer cut by the token limit is flagged, not dropped."""
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
