"""The ``openai`` backend: any OpenAI-compatible chat completions server (``vllm serve``, ...).

Each prompt is one request with a ``response_format`` JSON schema; the batch is sent
concurrently and the server batches it. Plain HTTP (httpx), no vendor SDK.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from medic.llm.base import Generation, GenerationSettings

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


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
        """All prompts at once; a server that is down or answers oddly is an error per prompt."""
        # httpx is not in the generation environment; this backend runs in Airflow's (in-process)
        import httpx  # noqa: PLC0415

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
