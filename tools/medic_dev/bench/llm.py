"""medic bench llm: diagnoses per second of a generation backend, in its own environment.

Usage: medic bench llm [--backend cpu|vllm] [--batch 16] [--batches 3] [--model DIR]
                       [--llm-python .venv-llm/bin/python] [--max-new-tokens 768]

Prompts are built by the real prompt builder from the labelled failures in
../shared/failures/dev.jsonl when present (else from a few built-in failure lines), one batch
at a time, in the generation environment through the same worker medic_diagnose uses. Without
``--model`` a tiny random Llama is built locally first: then the figure measures the
backend's mechanics (grammar-constrained decoding, batching), not a real model's quality.
On a GPU machine: ``--backend vllm --llm-python <the vLLM environment's python>``.
Reports model load apart from generation, schema-valid outputs, and diagnoses per second.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

FALLBACK = [
    "psycopg2.OperationalError: connection to server at 10.0.3.7, port 5432 failed: Connection refused",
    "botocore.exceptions.ClientError: An error occurred (ThrottlingException): Rate exceeded",
    "KeyError: 'customer_id'",
    "FileNotFoundError: [Errno 2] No such file or directory: '/data/landing/orders.csv'",
]


def failure_logs(n: int) -> list[str]:
    dev = Path(__file__).resolve().parents[1].parent / "shared" / "failures" / "dev.jsonl"
    logs = [json.loads(line)["log"] for line in dev.read_text().splitlines() if line.strip()] if dev.exists() else []
    logs = logs or FALLBACK
    return [logs[i % len(logs)] for i in range(n)]


def build_request(logs: list[str], settings: Any) -> dict[str, Any]:
    from medic.diagnose import generation, memory
    from medic.diagnose.diagnosis import Diagnosis
    from medic.diagnose.knowledge import load_runbooks

    prefix = generation.prompt_prefix(load_runbooks())
    requests = [
        {
            "incident_id": i,
            "prompt": generation.incident_prompt(
                prefix, memory.prepare(log), dag_id="bench", task_id=f"t{i}", operator=None, similar=[], retrieval=None
            ),
        }
        for i, log in enumerate(logs)
    ]
    return {"settings": asdict(settings), "schema": Diagnosis.model_json_schema(), "prompts": requests}


def main(argv: list[str], stack: Any = None) -> int:
    from medic.diagnose.diagnosis import Diagnosis
    from medic.llm.backends import GenerationSettings
    from medic.llm.client import run_isolated

    parser = argparse.ArgumentParser(prog="medic bench llm")
    parser.add_argument("--backend", default="cpu", choices=["cpu", "vllm"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--model", default="")
    parser.add_argument("--llm-python", default=".venv-llm/bin/python")
    parser.add_argument("--max-new-tokens", type=int, default=768)
    parser.add_argument("--temperature", type=float, default=0.0)
    args = parser.parse_args(argv)

    model, built = args.model, False
    if not model:
        model = tempfile.mkdtemp(prefix="medic-tiny-llm-")
        subprocess.run([args.llm_python, "-m", "medic_dev.tiny_model", model], check=True, capture_output=True)
        built = True
    settings = GenerationSettings(
        backend=args.backend,
        model=model,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        timeout_seconds=3600,
    )
    rates, loads, valid, total, tokens = [], [], 0, 0, []
    for number in range(args.batches):
        response = run_isolated(
            args.llm_python, build_request(failure_logs(args.batch), settings), timeout=settings.timeout_seconds + 60
        )
        generate_s = response["seconds"] - response.get("load_seconds", 0.0)
        loads.append(response.get("load_seconds", 0.0))
        ok = 0
        for result in response["results"]:
            total += 1
            tokens.append(result.get("tokens") or 0)
            try:
                Diagnosis.model_validate_json(result["text"] or "")
                ok += result["error"] is None
            except ValueError:
                pass
        valid += ok
        rates.append(args.batch / generate_s if generate_s > 0 else float("nan"))
        print(
            f"batch {number + 1}: {args.batch} prompts, load {loads[-1]:.1f}s, generate {generate_s:.1f}s,"
            f" {rates[-1]:.2f} diagnoses/s, {ok}/{args.batch} valid",
            flush=True,
        )
    print(
        json.dumps(
            {
                "backend": args.backend,
                "model": "tiny random Llama built locally" if built else model,
                "batch": args.batch,
                "batches": args.batches,
                "diagnoses_per_s": round(statistics.median(rates), 3),
                "valid": valid,
                "outputs": total,
                "mean_new_tokens": round(statistics.mean(tokens), 1) if tokens else 0,
                "model_load_s": round(statistics.median(loads), 2),
                "max_new_tokens": args.max_new_tokens,
                "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
            }
        )
    )
    return 0
