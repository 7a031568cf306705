"""medic bench cuda-check: the CUDA path of the embedder, for a machine with a GPU.

Usage: medic bench cuda-check [--texts 2048] [--batch-sizes 64,128,256]

Checks that ``embedding_device = auto`` picks CUDA, that the model runs in fp16 there, that
fp16 GPU vectors agree with fp32 CPU vectors (mean cosine >= 0.999, min >= 0.99), and measures
throughput per batch size. Exits 2 with a JSON line saying so when no GPU is present.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import TYPE_CHECKING

import numpy as np

from medic.diagnose.embedding import get_embedder
from medic.diagnose.evidence import extract

if TYPE_CHECKING:
    from medic_dev.stack import Stack


def main(argv: list[str], stack: Stack | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medic bench cuda-check")
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--batch-sizes", default="64,128,256")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    if not torch.cuda.is_available():
        print(
            json.dumps(
                {
                    "benchmark": "cuda-check",
                    "cuda": False,
                    "reason": "torch.cuda.is_available() is False",
                    "torch": torch.__version__,
                }
            )
        )
        return 2

    gpu = get_embedder(device="auto")
    cpu = get_embedder(device="cpu")
    dtype = str(next(gpu._model.parameters()).dtype)
    texts = [
        extract(
            f"psycopg.OperationalError: connection to server at 10.0.{i % 250}.{i % 7} failed: "
            f"Connection refused (shard {i})"
        ).embedding_text()
        for i in range(args.texts)
    ]
    sample = texts[:256]
    agreement = np.sum(gpu.encode(sample) * cpu.encode(sample), axis=1)
    runs = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        gpu.batch_size = batch
        gpu.encode(texts[:batch])
        torch.cuda.synchronize()
        started = time.perf_counter()
        gpu.encode(texts)
        torch.cuda.synchronize()
        rate = len(texts) / (time.perf_counter() - started)
        runs.append({"batch_size": batch, "texts_per_s": round(rate, 1)})
        print(f"bench: cuda batch {batch:>4}: {rate:9.1f} texts/s", flush=True)
    ok = gpu.device.startswith("cuda") and "float16" in dtype and agreement.min() >= 0.99
    print(
        json.dumps(
            {
                "benchmark": "cuda-check",
                "cuda": True,
                "ok": bool(ok),
                "device": gpu.device,
                "gpu": torch.cuda.get_device_name(0),
                "dtype": dtype,
                "fp16_vs_fp32_cosine_mean": round(float(agreement.mean()), 5),
                "fp16_vs_fp32_cosine_min": round(float(agreement.min()), 5),
                "runs": runs,
            }
        )
    )
    return 0 if ok else 1
