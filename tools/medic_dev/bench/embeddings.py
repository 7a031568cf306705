"""medic bench embeddings: embedding throughput for failure evidence of about 300 tokens.

Usage: medic bench embeddings [--texts N] [--batch-sizes 16,32,64] [--backends torch,onnx,openvino]

Texts are realistic failure evidence (error lines, a traceback's user frames) padded to about
300 word pieces with further log lines, as the model sees them (its window is 256, so the
model truncates; that is part of the cost measured). Each backend/batch size is warmed up once,
then timed over all texts. A backend whose extra packages are missing is reported, not skipped
silently (ONNX: ``pip install "sentence-transformers[onnx]"``; OpenVINO: ``[openvino]``).
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import TYPE_CHECKING, Any

from medic.diagnose.embedding import resolve_model

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedTokenizerBase

    from medic_dev.stack import Stack

LINES = [
    'psycopg2.OperationalError: connection to server at "10.0.3.7", port 5432 failed: Connection refused',
    "botocore.exceptions.ClientError: An error occurred (ThrottlingException) when calling the PutRecords "
    "operation: Rate exceeded",
    "airflow.exceptions.AirflowTaskTimeout: Timeout, PID: 4242",
    "google.api_core.exceptions.NotFound: 404 Not found: Table proj:staging.orders was not found in location US",
    "KeyError: 'customer_id'",
    "Pod status: Last State: Terminated, Reason: OOMKilled, Exit Code: 137",
    "requests.exceptions.HTTPError: 503 Server Error: Service Unavailable for url: https://partner.example/x",
    "in load_orders.py:transform > orders.py:normalise_rows",
    "[2026-01-01, 04:50:49 UTC] {taskinstance.py:1501} ERROR - Task failed with exception",
    'File "/opt/airflow/dags/sales.py", line 42, in load: rows = client.fetch(day, partition=part)',
]


def make_texts(n: int, tokenizer: PreTrainedTokenizerBase, target_tokens: int = 300) -> tuple[list[str], float]:
    texts = []
    for i in range(n):
        lines = [f"{LINES[i % len(LINES)]} (shard {i})"]
        j = i
        while len(tokenizer.tokenize("\n".join(lines))) < target_tokens:
            j += 1
            lines.append(LINES[j % len(LINES)])
        texts.append("\n".join(lines))
    mean_tokens = sum(len(tokenizer.tokenize(t)) for t in texts) / n
    return texts, mean_tokens


def load(backend: str, path: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    kwargs: dict[str, Any] = {"device": "cpu"}
    if backend != "torch":
        kwargs["backend"] = backend
    return SentenceTransformer(path, **kwargs)


def main(argv: list[str], stack: Stack | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medic bench embeddings")
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--batch-sizes", default="16,32,64")
    parser.add_argument("--backends", default="torch,onnx,openvino")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    model_id, path = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    runs: list[dict[str, Any]] = []
    unavailable: dict[str, str] = {}
    texts: list[str] = []
    mean_tokens = 0.0
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        try:
            started = time.perf_counter()
            model = load(backend, path)
            load_s = time.perf_counter() - started
        except Exception as exc:  # missing optional packages, or an export that failed
            unavailable[backend] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            print(f"bench: backend {backend} unavailable: {unavailable[backend]}", flush=True)
            continue
        if not texts:
            texts, mean_tokens = make_texts(args.texts, model.tokenizer)
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            model.encode(texts[:batch], batch_size=batch)  # warm-up
            started = time.perf_counter()
            model.encode(texts, batch_size=batch, normalize_embeddings=True)
            seconds = time.perf_counter() - started
            rate = len(texts) / seconds
            runs.append(
                {"backend": backend, "batch_size": batch, "texts_per_s": round(rate, 1), "load_s": round(load_s, 2)}
            )
            print(f"bench: {backend:<8} batch {batch:>3}: {rate:7.1f} texts/s", flush=True)
    best = max(runs, key=lambda r: r["texts_per_s"]) if runs else None
    print(
        json.dumps(
            {
                "benchmark": "embeddings",
                "model": model_id,
                "texts": len(texts),
                "mean_tokens": round(mean_tokens, 1),
                "device": "cpu",
                "threads": torch.get_num_threads(),
                "runs": runs,
                "best": best,
                "unavailable": unavailable,
                "machine": f"{os.cpu_count()} cores, {platform.machine()}",
            }
        )
    )
    return 0
