"""The ``cpu`` backend: transformers generation constrained by xgrammar, without a GPU.

It loads a model directory in Hugging Face format, or a GGUF file (a path or a packaged
model's name, ``medic.llm.models``) which transformers dequantises to float32: the GGUF path
exists so the same small model tests this backend and ``llamacpp``; for a quantised model in
production ``llamacpp`` is faster and several times smaller (see ``medic.llm.base``).

xgrammar is the structured-output engine vLLM itself uses, so the schema that works here works
there. A grammar is compiled once per schema and reused; each generate call gets one matcher
per sequence. Settings that xgrammar 0.2.8 needs (measured): no free whitespace
(``any_whitespace=False``, else a model can emit whitespace forever), compile cache off (with
it, pattern repeats over 128 fail to compile), and special tokens other than EOS blanked in the
token table (else a pad token's text is allowed inside JSON strings).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medic.llm import models
from medic.llm.base import INCOMPLETE, Generation, GenerationSettings, threads

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


class _GrammarLogits:
    """One GrammarMatcher per row; finished rows get an all-allowed mask so they never go all -inf."""

    def __init__(self, compiled: Any) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self.compiled = compiled
        self.vocab = compiled.tokenizer_info.vocab_size
        self.matchers: list[Any] | None = None
        self.bitmask = None
        self.batcher = xgr.BatchGrammarMatcher(2)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        """Advance each row's matcher by the token it just took, then mask what the grammar forbids."""
        xgr = self._xgr
        if self.matchers is None:
            self.matchers = [xgr.GrammarMatcher(self.compiled) for _ in range(input_ids.shape[0])]
            self.bitmask = xgr.allocate_token_bitmask(input_ids.shape[0], self.vocab)
        else:
            for row, (matcher, token) in enumerate(zip(self.matchers, input_ids[:, -1].tolist(), strict=True)):
                if not matcher.is_terminated() and not matcher.accept_token(token):
                    raise RuntimeError(f"row {row}: the grammar rejected token {token}")
        xgr.reset_token_bitmask(self.bitmask)
        active = [i for i, m in enumerate(self.matchers) if not m.is_terminated()]
        if active:
            self.batcher.batch_fill_next_token_bitmask([self.matchers[i] for i in active], self.bitmask, indices=active)
        xgr.apply_token_bitmask_inplace(scores, self.bitmask, vocab_size=self.vocab)
        return scores


def _source(model: str, cache: str) -> tuple[str, dict[str, Any]]:
    """Where transformers loads from: a directory, or a GGUF file's folder and name."""
    path = Path(models.resolve(model, cache))
    if path.suffix == ".gguf":
        return str(path.parent), {"gguf_file": path.name}
    return str(path), {}


class CpuBackend:
    """A transformers model on the CPU; every row of a batch decodes under its own grammar matcher."""

    name = "cpu"

    def __init__(self, settings: GenerationSettings) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not settings.model:
            raise ValueError("the cpu backend needs [medic] llm_model: a model directory or a GGUF file")
        torch.set_num_threads(threads(settings))
        self.settings = settings
        source, extra = _source(settings.model, settings.cache_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, **extra)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True, **extra)
        self.model.eval()  # type: ignore[no-untyped-call]  # transformers' nn.Module.eval is untyped
        self._grammars: dict[str, Any] = {}

    def _token_info(self) -> Any:
        """The token table xgrammar matches against: special tokens other than EOS can never be picked."""
        import xgrammar as xgr

        tok = self.tokenizer
        size = self.model.get_output_embeddings().weight.shape[0]  # type: ignore[no-untyped-call]
        base = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=size)
        table = [""] * size
        for text, index in tok.get_vocab().items():
            if index < size:
                table[index] = text
        for index in tok.all_special_ids:
            if index != tok.eos_token_id and index < size:
                table[index] = ""
        return xgr.TokenizerInfo(
            table,
            base.vocab_type,
            vocab_size=size,
            stop_token_ids=[tok.eos_token_id],
            add_prefix_space=base.add_prefix_space,
        )

    def grammar(self, schema: Mapping[str, Any]) -> Any:
        """The schema compiled for this tokenizer, once per schema."""
        import xgrammar as xgr

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:  # properties keep the schema's order: class and evidence before action
            compiler = xgr.GrammarCompiler(self._token_info(), max_threads=2, cache_enabled=False)
            self._grammars[key] = compiler.compile_json_schema(
                json.dumps(schema), any_whitespace=False, strict_mode=True
            )
        return self._grammars[key]

    def _render(self, prompt: str) -> str:
        """The prompt as the model's chat template frames a user turn (raw when it has none)."""
        if getattr(self.tokenizer, "chat_template", None):
            return str(
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
                )
            )
        return prompt

    def generate(self, prompts: Sequence[str], schema: Mapping[str, Any], deadline: float) -> list[Generation]:
        """One padded batch through ``model.generate``; a row that never reached EOS is incomplete."""
        import torch

        compiled = self.grammar(schema)
        tok = self.tokenizer
        encoded = tok(
            [self._render(p) for p in prompts], return_tensors="pt", padding=True, return_token_type_ids=False
        )
        sampling = (
            {"do_sample": True, "temperature": self.settings.temperature, "top_k": 0, "top_p": 1.0}
            if self.settings.temperature > 0
            else {"do_sample": False}
        )
        with torch.inference_mode():
            out = self.model.generate(
                **encoded,
                logits_processor=[_GrammarLogits(compiled)],
                max_new_tokens=self.settings.max_new_tokens,
                max_time=max(1.0, deadline - time.monotonic()),
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
                **sampling,
            )
        new = out[:, encoded["input_ids"].shape[1] :]
        results = []
        for row in new:
            ids = row.tolist()
            finished = tok.eos_token_id in ids
            if finished:
                ids = ids[: ids.index(tok.eos_token_id)]
            ids = [i for i in ids if i != tok.pad_token_id]
            text = str(tok.decode(ids, skip_special_tokens=True))
            error = None if finished else INCOMPLETE
            results.append(Generation(text, error, len(ids)))
        return results
