"""`medic eval` on labelled cases: the bar, and that a case never sees itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medic.diagnose.embedding import get_embedder
from medic.diagnose.knowledge import load_runbooks
from medic_dev.evaluate import CaseError, evaluate, load_cases

DEV_CASES = Path(__file__).resolve().parents[3] / "shared" / "failures" / "dev.jsonl"


@pytest.mark.shared("failures/dev.jsonl")  # skips without ../shared; fails in CI (tests/conftest.py)
@pytest.mark.parametrize("leave_one_out", [False, True])
def test_dev_cases_meet_the_bar(kb_conn, leave_one_out) -> None:
    """The development split as it stands (it grows: the count follows the file), against the bar
    issue 16 set for it; never a bar lowered to meet a number."""
    cases = load_cases(DEV_CASES)
    result = evaluate(kb_conn, get_embedder(), load_runbooks(), cases, leave_one_out=leave_one_out)
    labelled = [c for c in cases if c.get("error_class")]
    assert len(labelled) >= 94 and result["n"] == len(labelled)
    assert result["class_accuracy"] >= 0.80, result["confusions"]
    # an automatic fix on a case that is not auto-safe: never
    unsafe = [r["id"] for r in result["cases"] if r["automatic"] and not r["auto_safe"]]
    assert unsafe == [] and result["auto_precision"] in (None, 1.0)
    # nothing the evaluation added stays in the knowledge base
    assert kb_conn.execute("SELECT count(*) FROM medic.knowledge").fetchone()[0] == 0


def test_a_case_is_never_scored_against_itself(kb_conn, tmp_path) -> None:
    case = {
        "id": "only",
        "log": "psycopg2.errors.DeadlockDetected: deadlock detected",
        "error_class": "db_contention",
        "action": "retry",
        "auto_safe": True,
    }
    result = evaluate(kb_conn, get_embedder(), load_runbooks(), [case, {**case, "id": "twin"}], leave_one_out=True)
    by_id = {row["id"]: row for row in result["cases"]}
    assert by_id["only"]["top_match"] == "eval-case:twin"  # its twin, never itself
    alone = evaluate(kb_conn, get_embedder(), load_runbooks(), [case], leave_one_out=True)
    assert alone["cases"][0]["top_match"] != "eval-case:only"
    assert alone["automatic"] == 0  # no other verified incident exists, so nothing is automatic


def test_bad_case_files_are_refused_with_the_line(tmp_path) -> None:
    bad = tmp_path / "cases.jsonl"
    bad.write_text('{"id": 1, "log": "x"}\nnot json\n')
    with pytest.raises(CaseError, match=":2: not JSON"):
        load_cases(bad)
    bad.write_text('{"id": 1}\n')
    with pytest.raises(CaseError, match="needs an 'id' and a string 'log'"):
        load_cases(bad)


def test_cli_prints_one_json_object(embedded, it_db, tmp_path) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        json.dumps(
            {
                "id": "a",
                "log": "KeyError: 'customer_id'",
                "error_class": "code_bug",
                "action": "fix_code",
                "auto_safe": False,
            }
        )
        + "\n"
    )
    env = {
        **__import__("os").environ,
        "AIRFLOW_CONN_MEDIC_DB": json.dumps({**embedded.medic_conn(), "schema": "medic_it"}),
    }
    done = subprocess.run(
        [sys.executable, "-m", "medic.cli", "eval", "--cases", str(cases)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["n"] == 1 and result["class_accuracy"] == 1.0 and "per_class" in result


def test_eval_generation_path_scores_the_models_diagnoses(kb_conn, llm_python, tiny_model) -> None:
    """`medic eval --backend cpu`: the same prompts as medic_diagnose, one batch, in the generation env."""
    from medic.llm.base import GenerationSettings
    from medic.llm.client import run_isolated

    cases = [
        {
            "id": "net",
            "log": "ConnectionRefusedError: [Errno 111] Connection refused",
            "error_class": "network_transient",
            "action": "retry",
            "auto_safe": True,
        },
        {
            "id": "bug",
            "log": "KeyError: 'customer_id'",
            "error_class": "code_bug",
            "action": "fix_code",
            "auto_safe": False,
        },
        {
            "id": "dead",
            "log": "psycopg2.errors.DeadlockDetected: deadlock detected",
            "error_class": "db_contention",
            "action": "retry",
            "auto_safe": True,
        },
    ]
    requests = []

    def generate(request: dict) -> dict:
        requests.append(request)
        return run_isolated(llm_python, request, timeout=300)

    result = evaluate(
        kb_conn,
        get_embedder(),
        load_runbooks(),
        cases,
        leave_one_out=True,
        generate=generate,
        settings=GenerationSettings(backend="cpu", model=tiny_model),
    )
    assert len(requests) == 1 and len(requests[0]["prompts"]) == 3  # one batched call
    assert result["generation"]["python"] == llm_python and result["generation"]["refused"] == 0
    # a random model's guesses are scored as they are, and never automated without evidence it cannot forge
    assert all(row["refused"] is None for row in result["cases"])
    assert result["auto_precision"] in (None, 1.0)
