"""The ``llamacpp`` backend: a GGUF model on the CPU through llama.cpp (llama-cpp-python).

Output is constrained by a GBNF grammar that llama-cpp-python builds from the JSON schema,
so every token the model may pick keeps the answer inside the schema. Two adjustments make
"inside the grammar" mean "valid against the contract" (measured, see tests):

- every top-level property is made required in the grammar's copy of the schema: llama.cpp
  emits required properties before optional ones, and the contract orders class and evidence
  before the action on purpose. The answer still validates against the original schema.
- bounded numbers get rules that spell only numbers in their bounds (confidence 0..1,
  delay_seconds 30..86400): llama-cpp-python's converter ignores minimum and maximum.

Prompts of a batch run one after another on one context: llama.cpp reuses the key/value cache
of the longest token prefix shared with the previous prompt, so the fixed part of medic's
prompt (instructions, schema, runbooks) is computed once per batch, as vLLM's prefix cache does.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medic.llm import models
from medic.llm.base import INCOMPLETE, Generation, GenerationSettings, schema_json, threads

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def grammar_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema the grammar is built from: the contract with every top-level property required.

    Anything that matches it matches the contract (which only requires fewer properties).
    """
    out = copy.deepcopy(dict(schema))
    if isinstance(out.get("properties"), dict):
        out["required"] = list(out["properties"])
    return out


def _digits_between(low: str, high: str) -> list[list[str]]:
    """Digit strings of one length from ``low`` to ``high``, as alternatives of per-digit ranges."""
    if low == high:
        return [[f"{d}-{d}" for d in low]]
    if len(low) == 1:
        return [[f"{low}-{high}"]]
    if low[0] == high[0]:
        return [[f"{low[0]}-{low[0]}", *rest] for rest in _digits_between(low[1:], high[1:])]
    width = len(low) - 1
    out: list[list[str]] = []
    first, last = low[0], high[0]
    if low[1:] != "0" * width:  # low's first digit, then its tail up to 9...9
        out += [[f"{first}-{first}", *rest] for rest in _digits_between(low[1:], "9" * width)]
        first = chr(ord(first) + 1)
    tail = []
    if high[1:] != "9" * width:  # high's first digit, then 0...0 up to its tail
        tail = [[f"{last}-{last}", *rest] for rest in _digits_between("0" * width, high[1:])]
        last = chr(ord(last) - 1)
    if first <= last:
        out.append([f"{first}-{last}"] + ["0-9"] * width)
    return out + tail


def integer_ranges(low: int, high: int) -> list[list[str]]:
    """The decimal spellings (no leading zeros) of the integers ``low..high`` (both >= 0).

    Each alternative is a list of digit ranges such as ``["3-3", "0-9"]`` (30..39); a grammar
    or a regular expression renders each range as a character class.
    """
    if not 0 <= low <= high:
        raise ValueError(f"need 0 <= low <= high, not {low}..{high}")
    out: list[list[str]] = []
    for width in range(len(str(low)), len(str(high)) + 1):
        start = max(low, 10 ** (width - 1) if width > 1 else 0)
        stop = min(high, 10**width - 1)
        if start <= stop:
            out += _digits_between(str(start), str(stop))
    return out


# a JSON number in [0, 1]: 0, 0.d..., 1, 1.0... (at most 6 decimals: the model needs no more)
UNIT_INTERVAL = '("0" ("." [0-9]{1,6})? | "1" ("." "0"{1,6})?) space'


def _bounded_rule(schema: Mapping[str, Any]) -> str | None:
    """An exact rule for the bounded numbers llama.cpp's converter leaves unbounded, else None."""
    kind, low, high = schema.get("type"), schema.get("minimum"), schema.get("maximum")
    if schema.get("exclusiveMinimum") is not None or schema.get("exclusiveMaximum") is not None:
        return None
    if kind == "number" and low == 0 and high == 1:
        return UNIT_INTERVAL
    if kind == "integer" and isinstance(low, int) and isinstance(high, int) and 0 <= low <= high:
        spelled = (" ".join(f"[{r}]" for r in ranges) for ranges in integer_ranges(low, high))
        return "(" + " | ".join(spelled) + ") space"
    return None


def build_grammar_text(schema: Mapping[str, Any]) -> str:
    """GBNF for ``schema`` (through grammar_schema), with bounded integers and [0, 1] numbers exact."""
    from llama_cpp.llama_grammar import SchemaConverter

    class Converter(SchemaConverter):  # type: ignore[misc]  # llama_cpp ships no type information
        def visit(self, schema: dict[str, Any], name: str) -> str:
            rule = _bounded_rule(schema)
            if rule is None:
                return str(super().visit(schema, name))
            return str(self._add_rule(name or "root", rule))

    converter = Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.visit(converter.resolve_refs(grammar_schema(schema), ""), "")
    return str(converter.format_grammar())


class LlamaCppBackend:
    """One llama.cpp context; the batch runs prompt by prompt, sharing the cached prefix."""

    name = "llamacpp"

    def __init__(self, settings: GenerationSettings) -> None:
        from llama_cpp import Llama

        if not settings.model:
            raise ValueError(
                "the llamacpp backend needs [medic] llm_model: a GGUF file or a packaged model"
                f" ({', '.join(sorted(models.PACKAGED))})"
            )
        path = Path(models.resolve(settings.model, settings.cache_dir))
        if not path.is_file():
            raise ValueError(f"the llamacpp backend needs a GGUF file; {path} is not a file")
        count = threads(settings)
        self.settings = settings
        self.path = path
        self.llm = Llama(
            model_path=str(path),
            n_ctx=settings.max_model_len,
            n_batch=512,
            n_threads=count,
            n_threads_batch=count,
            seed=0,
            verbose=False,
        )
        self._grammars: dict[str, Any] = {}

    def grammar(self, schema: Mapping[str, Any]) -> Any:
        """The schema's grammar, built once per schema."""
        from llama_cpp import LlamaGrammar

        key = schema_json(schema)
        if key not in self._grammars:
            self._grammars[key] = LlamaGrammar.from_string(build_grammar_text(schema), verbose=False)
        return self._grammars[key]

    def _sampling(self) -> dict[str, Any]:
        """Greedy at temperature 0; otherwise plain sampling at that temperature (no top-k/p cuts)."""
        return {
            "temperature": self.settings.temperature,
            "top_k": 0,
            "top_p": 1.0,
            "min_p": 0.0,
            "repeat_penalty": 1.0,
        }

    def _one(self, prompt: str, grammar: Any, deadline: float) -> Generation:
        """One answer, streamed so the deadline is checked between tokens."""
        pieces: list[str] = []
        tokens, finish = 0, None
        chunks = self.llm.create_chat_completion(
            messages=[{"role": "user", "content": prompt}],
            grammar=grammar,
            max_tokens=self.settings.max_new_tokens,
            stream=True,
            **self._sampling(),
        )
        for chunk in chunks:
            choice = chunk["choices"][0]
            content = choice.get("delta", {}).get("content")
            if content:
                pieces.append(content)
                tokens += 1
            finish = choice.get("finish_reason") or finish
            if finish is None and time.monotonic() > deadline:
                break
        text = "".join(pieces)
        return Generation(text, None if finish == "stop" else INCOMPLETE, tokens)

    def generate(self, prompts: Sequence[str], schema: Mapping[str, Any], deadline: float) -> list[Generation]:
        """Each prompt in turn; one that fails (too long for the context, ...) is an error for it alone."""
        grammar = self.grammar(schema)
        results = []
        for prompt in prompts:
            try:
                results.append(self._one(prompt, grammar, deadline))
            except ValueError as exc:  # llama-cpp-python raises ValueError for a prompt over n_ctx
                results.append(Generation(None, f"llamacpp backend refused the prompt: {exc}"[:500]))
        return results
