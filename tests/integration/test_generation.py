"""Generation in the isolated environment with a real small instruct model (SmolLM2-135M-Instruct):
schema-valid output every time on both local engines, batching, timeouts, broken models and
backends that are down, and the vllm code path against its named double."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from medic.contract import Diagnosis
from medic.diagnose.generation import check_output, model_diagnosis
from medic.llm import worker
from medic.llm.base import INCOMPLETE, GenerationSettings
from medic.llm.client import IsolatedRunError, run_isolated

SCHEMA = Diagnosis.model_json_schema()
DOUBLES = Path(__file__).resolve().parents[1] / "doubles"
FAILURE = "ERROR psycopg2.OperationalError: could not connect to server: Connection refused"


def request(model: str, n: int, **settings) -> dict:
    prompts = [
        {"incident_id": i, "prompt": f"Failure {i}:\n{FAILURE} (attempt {i})\nAnswer (JSON):\n"} for i in range(n)
    ]
    return {"settings": asdict(GenerationSettings(model=model, **settings)), "schema": SCHEMA, "prompts": prompts}


def assert_all_valid(response: dict, n: int) -> None:
    results = response["results"]
    assert [r["incident_id"] for r in results] == list(range(n))
    for result in results:
        assert result["error"] is None, result
        Diagnosis.model_validate_json(result["text"])  # raises if not valid
        assert check_output(result["text"], failure_text=FAILURE, offered_keys=[]).problem is None


def assert_isolated(response: dict) -> None:
    """The batch ran in the generation environment: another interpreter, no Airflow in it."""
    env = response["environment"]
    assert Path(env["python"]).parent != Path(sys.executable).parent
    assert env["airflow_importable"] is False and env["packages"]["apache-airflow"] is None


def test_llamacpp_backend_is_schema_valid_every_time_in_one_batch_in_a_second_environment(
    llm_python: str, tiny_model: str
) -> None:
    # sampled at temperature 1 over the whole vocabulary: only the grammar keeps a 135M model valid
    batch = request(tiny_model, 4, backend="llamacpp", temperature=1.0, max_new_tokens=1500, timeout_seconds=900)
    response = run_isolated(llm_python, batch, timeout=960)
    assert_all_valid(response, 4)
    assert_isolated(response)
    assert response["environment"]["packages"]["llama-cpp-python"] == "0.3.36"
    assert importlib.util.find_spec("llama_cpp") is None  # its libraries never entered Airflow's


def test_cpu_backend_is_schema_valid_every_time_on_the_same_model(llm_python: str, tiny_model: str) -> None:
    """transformers + xgrammar (vLLM's grammar engine), the GGUF dequantised by transformers.

    Greedy: a padded batch runs as long as its longest row, and sampled rows of a 135M model
    can run to the grammar's length caps (the llamacpp test above samples)."""
    batch = request(tiny_model, 2, backend="cpu", max_new_tokens=1500, timeout_seconds=900)
    response = run_isolated(llm_python, batch, timeout=960)
    assert_all_valid(response, 2)
    assert_isolated(response)
    assert response["environment"]["packages"]["xgrammar"] == "0.2.8"
    assert importlib.util.find_spec("xgrammar") is None


def test_greedy_answers_quote_the_failure_and_fit_the_bounds(llm_python: str, tiny_model: str) -> None:
    """At temperature 0 the answer is reproducible, and bounded numbers stay in their bounds."""
    first = run_isolated(llm_python, request(tiny_model, 2, backend="llamacpp"), timeout=300)
    again = run_isolated(llm_python, request(tiny_model, 2, backend="llamacpp"), timeout=300)
    assert_all_valid(first, 2)
    assert [r["text"] for r in first["results"]] == [r["text"] for r in again["results"]]
    for result in first["results"]:
        answer = json.loads(result["text"])
        assert list(answer) == list(SCHEMA["properties"])  # every property, in the contract's order
        assert 0 <= answer["confidence"] <= 1


def test_a_batch_past_its_time_limit_escalates_every_incident(llm_python: str, tiny_model: str) -> None:
    response = run_isolated(llm_python, request(tiny_model, 3, backend="llamacpp", timeout_seconds=0.3), timeout=120)
    assert [r["error"] for r in response["results"]] == ["generation exceeded 0.3s"] * 3
    retrieval = Diagnosis(
        error_class="network_transient",
        transience="transient",
        root_cause="refused",
        action="retry",
        confidence=0.9,
        explanation="x",
    )
    diagnosis, problem, _ = model_diagnosis(retrieval, response["results"][0], FAILURE, [])
    assert diagnosis.action == "escalate" and diagnosis.confidence == 0 and "exceeded" in problem


@pytest.mark.parametrize("backend", ["llamacpp", "cpu"])
def test_generation_stopped_by_the_token_limit_escalates(llm_python: str, tiny_model: str, backend: str) -> None:
    response = run_isolated(llm_python, request(tiny_model, 2, backend=backend, max_new_tokens=5), timeout=300)
    for result in response["results"]:
        assert result["error"] == INCOMPLETE
        assert result["text"] and result["text"].startswith("{")  # what it had, cut short
        assert check_output(result["text"], failure_text=FAILURE, offered_keys=[]).diagnosis is None


def test_a_prompt_too_long_for_the_context_fails_alone(llm_python: str, tiny_model: str) -> None:
    batch = request(tiny_model, 2, backend="llamacpp", max_model_len=1024, max_new_tokens=400)
    batch["prompts"][0]["prompt"] = "line: Connection refused\n" * 400 + "Answer (JSON):\n"
    response = run_isolated(llm_python, batch, timeout=300)
    long, short = response["results"]
    assert long["text"] is None and "llamacpp backend refused the prompt" in long["error"]
    assert short["error"] is None and Diagnosis.model_validate_json(short["text"])


def test_a_model_file_that_is_not_a_model_escalates_with_the_reason(llm_python: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    response = run_isolated(llm_python, request(str(broken), 2, backend="llamacpp"), timeout=120)
    assert all(r["text"] is None and r["error"].startswith("llamacpp backend failed") for r in response["results"])


def test_the_isolated_run_reports_a_missing_or_hung_interpreter(tmp_path: Path) -> None:
    with pytest.raises(IsolatedRunError, match="no generation interpreter"):
        run_isolated(str(tmp_path / "nope" / "python"), request("m", 1, backend="cpu"), timeout=10)
    sleeper = tmp_path / "python"
    sleeper.write_text("#!/bin/sh\nsleep 30\n")
    sleeper.chmod(0o755)
    with pytest.raises(IsolatedRunError, match="did not answer within 1s"):
        run_isolated(str(sleeper), request("m", 1, backend="cpu"), timeout=1)


def test_vllm_refuses_to_run_beside_airflow() -> None:
    response = worker.run(request("any", 2, backend="vllm"))
    assert all("runs only in its isolated environment" in r["error"] for r in response["results"])


def test_a_local_backend_that_is_not_installed_says_where(tmp_path: Path) -> None:
    """Airflow's environment has no llama.cpp: the worker says so per incident instead of crashing."""
    response = worker.run(request("smollm2-135m-instruct", 2, backend="llamacpp"))
    assert all(r["text"] is None and "backend is not installed in" in r["error"] for r in response["results"])


def test_an_openai_server_that_is_down_escalates_with_the_reason() -> None:
    settings = {"base_url": "http://127.0.0.1:9/v1", "model": "m", "timeout_seconds": 5}
    response = worker.run({**request("m", 2, backend="openai"), "settings": {"backend": "openai", **settings}})
    assert all(r["text"] is None and "unreachable" in r["error"] for r in response["results"])


def test_openai_backend_sends_the_schema_as_response_format() -> None:
    import httpx

    from medic.llm.openai import OpenAIBackend

    seen = []

    def handler(http_request: httpx.Request) -> httpx.Response:
        body = json.loads(http_request.content)
        seen.append((http_request.headers.get("authorization"), body))
        content = json.dumps(
            {
                "error_class": "timeout",
                "transience": "unknown",
                "root_cause": "r",
                "evidence": [],
                "action": "escalate",
                "action_params": {},
                "confidence": 0.2,
                "explanation": "e",
                "similar_incidents": [],
            }
        )
        return httpx.Response(
            200,
            json={
                "choices": [{"message": {"content": content}, "finish_reason": "stop"}],
                "usage": {"completion_tokens": 40},
            },
        )

    backend = OpenAIBackend(
        GenerationSettings(backend="openai", model="served", base_url="http://llm/v1", api_key="k"),
        transport=httpx.MockTransport(handler),
    )
    out = backend.generate(["p1", "p2"], SCHEMA, deadline=1e12)
    assert [g.error for g in out] == [None, None] and all(Diagnosis.model_validate_json(g.text) for g in out)
    assert len(seen) == 2 and seen[0][0] == "Bearer k"
    assert seen[0][1]["response_format"]["json_schema"]["schema"] == SCHEMA


def test_vllm_backend_code_path_against_the_vllm_double(llm_python: str, tiny_model: str, tmp_path: Path) -> None:
    """The real worker in the generation environment, with the *double* of vLLM on its path."""
    log = tmp_path / "vllm-calls.jsonl"
    env = {**os.environ, "PYTHONPATH": str(DOUBLES), "MEDIC_VLLM_DOUBLE_LOG": str(log)}
    done = subprocess.run(
        [llm_python, "-m", "medic.llm.worker"],
        input=json.dumps(request(tiny_model, 2, backend="vllm", max_new_tokens=1500)),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    response = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r["error"] for r in response["results"]] == [None] * 2, response["results"]
    for result in response["results"]:
        Diagnosis.model_validate_json(result["text"])
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["call"] for c in calls] == ["LLM", "generate"]  # one engine, one batched call
    assert calls[0]["enable_prefix_caching"] is True
    assert calls[1] == {
        "call": "generate",
        "prompts": 2,
        "temperature": 0.0,
        "max_tokens": 1500,
        "schema_title": "Diagnosis",
        "disable_any_whitespace": True,
    }
