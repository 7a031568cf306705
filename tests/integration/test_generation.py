"""Generation in the isolated environment: schema-valid output every time, batching, timeouts,
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

from medic.diagnose.diagnosis import Diagnosis
from medic.diagnose.generation import check_output, model_diagnosis
from medic.llm import worker
from medic.llm.backends import GenerationSettings
from medic.llm.client import IsolatedRunError, run_isolated

SCHEMA = Diagnosis.model_json_schema()
DOUBLES = Path(__file__).resolve().parents[1] / "doubles"
FAILURE = "ERROR psycopg2.OperationalError: could not connect to server: Connection refused"


def request(model: str, n: int, **settings) -> dict:
    prompts = [
        {"incident_id": i, "prompt": f"Failure {i}:\n{FAILURE} (attempt {i})\nAnswer (JSON):\n"} for i in range(n)
    ]
    return {"settings": asdict(GenerationSettings(model=model, **settings)), "schema": SCHEMA, "prompts": prompts}


def test_cpu_backend_is_schema_valid_every_time_in_one_batch_in_a_second_environment(
    llm_python: str, tiny_model: str
) -> None:
    # sampled at temperature 1 from a random model: only the grammar keeps it valid
    response = run_isolated(
        llm_python, request(tiny_model, 8, backend="cpu", temperature=1.0, max_new_tokens=1500), timeout=600
    )
    results = response["results"]
    assert [r["incident_id"] for r in results] == list(range(8))
    for result in results:
        assert result["error"] is None, result
        Diagnosis.model_validate_json(result["text"])  # raises if not valid
        assert check_output(result["text"], failure_text=FAILURE, offered_keys=[]).problem is None
    env = response["environment"]
    # the batch ran in the generation environment: another interpreter, no Airflow in it ...
    assert Path(env["python"]).parent != Path(sys.executable).parent
    assert env["airflow_importable"] is False and env["packages"]["apache-airflow"] is None
    assert env["packages"]["xgrammar"] == "0.2.8"
    # ... and its libraries never entered Airflow's
    assert importlib.util.find_spec("xgrammar") is None


def test_a_batch_past_its_time_limit_escalates_every_incident(llm_python: str, tiny_model: str) -> None:
    response = run_isolated(llm_python, request(tiny_model, 3, backend="cpu", timeout_seconds=0.3), timeout=120)
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


def test_generation_stopped_by_the_token_limit_escalates(llm_python: str, tiny_model: str) -> None:
    response = run_isolated(llm_python, request(tiny_model, 2, backend="cpu", max_new_tokens=5), timeout=300)
    for result in response["results"]:
        assert "stopped before the answer was complete" in result["error"]
        assert check_output(result["text"], failure_text=FAILURE, offered_keys=[]).diagnosis is None


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


def test_an_openai_server_that_is_down_escalates_with_the_reason() -> None:
    settings = {"base_url": "http://127.0.0.1:9/v1", "model": "m", "timeout_seconds": 5}
    response = worker.run({**request("m", 2, backend="openai"), "settings": {"backend": "openai", **settings}})
    assert all(r["text"] is None and "unreachable" in r["error"] for r in response["results"])


def test_openai_backend_sends_the_schema_as_response_format() -> None:
    import httpx

    from medic.llm.backends import OpenAIBackend

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
        input=json.dumps(request(tiny_model, 4, backend="vllm", max_new_tokens=1500)),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    response = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r["error"] for r in response["results"]] == [None] * 4, response["results"]
    for result in response["results"]:
        Diagnosis.model_validate_json(result["text"])
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["call"] for c in calls] == ["LLM", "generate"]  # one engine, one batched call
    assert calls[0]["enable_prefix_caching"] is True
    assert calls[1] == {
        "call": "generate",
        "prompts": 4,
        "temperature": 0.0,
        "max_tokens": 1500,
        "schema_title": "Diagnosis",
        "disable_any_whitespace": True,
    }
