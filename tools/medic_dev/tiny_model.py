"""A tiny random causal LM built locally from a config: no hub download, under a few MB.

It knows nothing; it exists to prove the generation mechanics (grammar-constrained output
that always validates, batching, isolation, timeouts) on any machine, and to measure the
backends' overhead. A byte-level BPE tokenizer trained here can spell every printable ASCII
character, so the grammar can always complete.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

PAD, EOS = "<|pad|>", "<|eos|>"
_WORDS = (  # noqa: SIM905
    "the a of to in for with from is was not no error failed timeout retry connection refused reset host "
    "network database lock deadlock worker lost killed memory disk quota rate limit exceeded upstream service "
    "unavailable auth token expired credentials invalid missing input file found schema column null value data "
    "quality bug exception traceback key index type module import dependency version config task run dag"
).split()


def _corpus(lines: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    printable = string.printable[:95]
    corpus = [printable, json.dumps({"k": "v", "n": [1, 2.5, None, True, False]})]
    for _ in range(lines):
        if rng.random() < 0.6:
            corpus.append(" ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 20))))
        else:
            corpus.append(json.dumps({rng.choice(_WORDS): rng.choice(_WORDS) for _ in range(rng.randint(1, 4))}))
    return corpus


def build(
    out_dir: str | Path, *, hidden_size: int = 64, layers: int = 2, vocab_size: int = 1500, seed: int = 0
) -> Path:
    """Write a random Llama and its tokenizer to ``out_dir`` (save_pretrained format)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(3000, seed), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token=PAD, eos_token=EOS, padding_side="left", model_max_length=8192
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=8192,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


if __name__ == "__main__":
    import sys

    print(build(sys.argv[1] if len(sys.argv) > 1 else "tiny-llm"))
