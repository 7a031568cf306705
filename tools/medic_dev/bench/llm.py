"""medic bench llm: seconds per diagnosis of a generation backend, in its own environment.

Usage: medic bench llm [--backend llamacpp|cpu|vllm] [--model NAME_OR_PATH] [--batch 4]
                       [--batches 2] [--llm-python .venv-llm/bin/python] [--max-new-tokens 768]
                       [--threads 0] [--cache-dir DIR]

Prompts are medic's real prompts (the fixed part first: instructions, schema, runbook digest;
then the fenced failure), built from the labelled failures in ../shared/failures/dev.jsonl
when present (else from a few built-in failure lines), one batch at a time, in the generation
environment through the same worker medic_diagnose uses. The default model is the packaged
Qwen2.5-Coder-1.5B-Instruct (``make llm-model``); ``--model smollm2-135m-instruct`` measures
the tests' small model. On a GPU machine: ``--backend vllm --llm-python <the vLLM env's python>``.

Each output is checked as the Airflow side checks it (``check_output``: JSON, the contract,
evidence quoted from the failure). Reports model load apart from generation, seconds per
diagnosis, the worker's peak resident memory, and valid outputs. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from medic.contract import Diagnosis
from medic.diagnose import generation, memory
from medic.diagnose.generation import check_output
from medic.diagnose.knowledge import load_runbooks
from medic.llm.base import GenerationSettings
from medic.llm.client import run_isolated

FALLBACK = [
    "psycopg2.OperationalError: connection to server at 10.0.3.7, port 5432 failed: Connection refused",
    "botocore.exceptions.ClientError: An error occurred (ThrottlingException): Rate exceeded",
    "KeyError: 'customer_id'",
    "FileNotFoundError: [Errno 2] No such file or directory: '/data/landing/orders.csv'",
]
DEFAULT_MODEL = {"llamacpp": "qwen2.5-coder-1.5b-instruct", "cpu": "smollm2-135m-instruct"}


def failure_logs(n: int, skip: int = 0) -> list[str]:
    """``n`` failure logs, starting ``skip`` logs in (so each batch gets different failures)."""
    dev = Path(__file__).resolve().parents[4] / "shared" / "failures" / "dev.jsonl"
    logs = [json.loads(line)["log"] for line in dev.read_text().splitlines() if line.strip()] if dev.exists() else []
    logs = logs or FALLBACK
    return [logs[(skip + i) % len(logs)] for i in range(n)]


def build_request(logs: list[str], settings: GenerationSettings) -> tuple[dict[str, Any], list[str]]:
    """The worker request for ``logs``, and the failure text each prompt shows (to check quotes)."""

    prefix = generation.prompt_prefix(load_runbooks())
    prompts, failures = [], []
    for i, log in enumerate(logs):
        prepared = memory.prepare(log)
        text = generation.incident_prompt(
            prefix, prepared, dag_id="bench", task_id=f"t{i}", operator=None, similar=[], retrieval=None
        )
        prompts.append({"incident_id": i, "prompt": text})
        failures.append(text[len(prefix) :])
    request = {"settings": asdict(settings), "schema": Diagnosis.model_json_schema(), "prompts": prompts}
    return request, failures


def main(argv: list[str], stack: object = None) -> int:
    """Run the batches, print one line per batch and a JSON summary last."""

    parser = argparse.ArgumentParser(prog="medic bench llm")
    parser.add_argument("--backend", default="llamacpp", choices=["llamacpp", "cpu", "vllm"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--model", default="", help="a path or a packaged model's name (default: per backend)")
    parser.add_argument("--llm-python", default=".venv-llm/bin/python")
    parser.add_argument("--max-new-tokens", type=int, default=768)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core the worker may use)")
    parser.add_argument("--cache-dir", default="", help="where packaged models are assembled")
    args = parser.parse_args(argv)

    model = args.model or DEFAULT_MODEL.get(args.backend, "")
    settings = GenerationSettings(
        backend=args.backend,
        model=model,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        timeout_seconds=3600,
        threads=args.threads,
        cache_dir=args.cache_dir,
    )
    per_diagnosis, loads, valid, total, tokens, problems = [], [], 0, 0, [], []
    for number in range(args.batches):
        request, failures = build_request(failure_logs(args.batch, number * args.batch), settings)
        response = run_isolated(args.llm_python, request, timeout=settings.timeout_seconds + 60)
        generate_s = response["seconds"] - response.get("load_seconds", 0.0)
        loads.append(response.get("load_seconds", 0.0))
        ok = 0
        for result, failure in zip(response["results"], failures, strict=True):
            total += 1
            tokens.append(result.get("tokens") or 0)
            checked = check_output(result["text"], failure_text=failure, offered_keys=[])
            if result["error"] is None and checked.problem is None:
                ok += 1
            else:
                problems.append(result["error"] or checked.problem)
        valid += ok
        per_diagnosis.append(generate_s / args.batch)
        print(
            f"batch {number + 1}: {args.batch} prompts, load {loads[-1]:.1f}s, generate {generate_s:.1f}s,"
            f" {per_diagnosis[-1]:.2f} s/diagnosis, {ok}/{args.batch} valid",
            flush=True,
        )
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, all batches
    peak_mb = children.ru_maxrss / 1024  # Linux: KiB
    print(
        json.dumps(
            {
                "backend": args.backend,
                "model": model,
                "batch": args.batch,
                "batches": args.batches,
                "seconds_per_diagnosis": round(statistics.median(per_diagnosis), 2),
                "diagnoses_per_s": round(1 / statistics.median(per_diagnosis), 3),
                "valid": valid,
                "outputs": total,
                "problems": problems[:5],
                "mean_new_tokens": round(statistics.mean(tokens), 1) if tokens else 0,
                "model_load_s": round(statistics.median(loads), 2),
                # CPU time, load included: what a diagnosis costs on a machine shared with others
                "worker_cpu_s_per_diagnosis": round((children.ru_utime + children.ru_stime) / total, 2),
                "worker_peak_rss_mb": round(peak_mb),
                "max_new_tokens": args.max_new_tokens,
                "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
            }
        )
    )
    return 0
