"""`medic eval`: measure the diagnosis path on labelled failure cases.

Cases are JSON lines in the format of shared/failures/dev.jsonl: ``id`` and ``log`` are
required; ``error_class``, ``action`` and ``auto_safe`` are the labels when present. Each
case goes through the same path medic_diagnose uses (medic.memory). With ``leave_one_out``
the labelled cases are also stored as verified past incidents, and each case is scored with
its own entry excluded: a case never sees itself. Everything the evaluation adds to the
knowledge base is rolled back at the end.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psycopg

from medic.diagnose import knowledge, memory
from medic.diagnose.diagnosis import Thresholds
from medic.diagnose.embedding import Embedder
from medic.diagnose.generation import model_diagnosis
from medic.diagnose.knowledge import Entry, Runbook
from medic.llm.backends import GenerationSettings
from medic.policy.gate import decide


class CaseError(ValueError):
    pass


def load_cases(path: str | Path) -> list[dict[str, Any]]:
    cases = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CaseError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(case, dict) or not isinstance(case.get("log"), str) or "id" not in case:
            raise CaseError(f"{path}:{number}: a case needs an 'id' and a string 'log'")
        cases.append(case)
    if not cases:
        raise CaseError(f"{path}: no cases")
    return cases


def _case_key(case: dict[str, Any]) -> str:
    return f"eval-case:{case['id']}"


def evaluate(
    conn: psycopg.Connection,
    embedder: Embedder,
    runbooks: Sequence[Runbook],
    cases: Sequence[dict[str, Any]],
    *,
    leave_one_out: bool = False,
    thresholds: Thresholds | None = None,
    generate: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    settings: GenerationSettings | None = None,
) -> dict[str, Any]:
    """Score the path on labelled cases; with ``generate`` (a worker call) the model diagnoses too."""
    t = thresholds or Thresholds()
    prepared = [memory.prepare(case["log"]) for case in cases]
    with conn.transaction(force_rollback=True):  # nothing the evaluation adds is kept
        memory.refresh_runbooks(conn, embedder, runbooks)
        if leave_one_out:
            past = [
                Entry(
                    kind="incident",
                    source_key=_case_key(case),
                    text=item.embedding_text,
                    error_class=case.get("error_class"),
                    action=case.get("action"),
                    auto_safe=case.get("auto_safe"),
                    outcome="resolved",
                    fingerprint=item.fingerprint,
                    title=f"past incident {case['id']}",
                )
                for case, item in zip(cases, prepared, strict=True)
                if case.get("error_class") in knowledge.ERROR_CLASSES and case.get("action") in knowledge.ACTIONS
            ]
            knowledge.upsert(conn, embedder, past)
        results = memory.diagnose_prepared(
            conn, embedder, runbooks, prepared, exclude_keys=[[_case_key(c)] for c in cases], thresholds=t
        )
    generated: dict[str, Any] = {}
    if generate is not None:
        generated = generate(_generation_request(runbooks, cases, prepared, results, settings or GenerationSettings()))
    outputs = {r["incident_id"]: r for r in generated.get("results", [])}
    books = {b.error_class: b for b in runbooks}
    rows = []
    for case, item, (decision, matches) in zip(cases, prepared, results, strict=True):
        d, automatic, problem = decision.diagnosis, decision.automatic, None
        if generate is not None:
            d, problem, _ = model_diagnosis(
                d, outputs.get(case["id"]), item.text, [m.source_key for m in matches if m.kind == "incident"]
            )
            automatic = decide(d, matches, books.get(d.error_class), t).automatic
        rows.append(
            {
                "id": case["id"],
                "true_class": case.get("error_class"),
                "class": d.error_class,
                "true_action": case.get("action"),
                "action": d.action,
                "auto_safe": case.get("auto_safe"),
                "automatic": automatic,
                "confidence": d.confidence,
                "top_match": matches[0].source_key if matches else None,
                "refused": problem,
            }
        )
    report = {**score(rows), "leave_one_out": leave_one_out, "model": embedder.model_id, "cases": rows}
    if generate is not None:
        report["generation"] = {
            "backend": generated.get("backend"),
            "model": generated.get("model"),
            "python": (generated.get("environment") or {}).get("python"),
            "batch_seconds": generated.get("seconds"),
            "refused": sum(1 for r in rows if r["refused"]),
            "diagnoses_per_second": round(len(rows) / generated["seconds"], 3) if generated.get("seconds") else None,
        }
    return report


def _generation_request(runbooks, cases, prepared, results, settings: GenerationSettings) -> dict[str, Any]:
    """The same prompts medic_diagnose builds, one per case, in one batch."""
    from medic.diagnose import generation
    from medic.diagnose.diagnosis import Diagnosis

    prefix = generation.prompt_prefix(runbooks)
    requests = []
    for case, item, (decision, matches) in zip(cases, prepared, results, strict=True):
        similar = generation.neighbours(matches)
        prompt = generation.incident_prompt(
            prefix,
            item,
            dag_id="eval",
            task_id=str(case["id"]),
            operator=case.get("operator_or_library"),
            similar=similar,
            retrieval=decision.diagnosis,
        )
        requests.append({"incident_id": case["id"], "prompt": prompt})
    return {"settings": asdict(settings), "schema": Diagnosis.model_json_schema(), "prompts": requests}


def score(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    labelled = [r for r in rows if r["true_class"]]
    n = len(labelled)
    classes = sorted({r["true_class"] for r in labelled} | {r["class"] for r in labelled})
    per_class: dict[str, dict[str, Any]] = {}
    f1s = []
    for cls in classes:
        tp = sum(1 for r in labelled if r["class"] == cls and r["true_class"] == cls)
        predicted = sum(1 for r in labelled if r["class"] == cls)
        actual = sum(1 for r in labelled if r["true_class"] == cls)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if actual:
            f1s.append(f1)
        per_class[cls] = {
            "n": actual,
            "predicted": predicted,
            "correct": tp,
            "precision": round(precision, 3),
            "recall": round(recall, 3),
            "f1": round(f1, 3),
        }
    automatic = [r for r in labelled if r["automatic"]]
    safe = [r for r in labelled if r["auto_safe"]]
    return {
        "n": n,
        "class_accuracy": round(sum(r["class"] == r["true_class"] for r in labelled) / n, 3) if n else None,
        "class_macro_f1": round(sum(f1s) / len(f1s), 3) if f1s else None,
        "action_accuracy": round(sum(r["action"] == r["true_action"] for r in labelled) / n, 3) if n else None,
        "auto_precision": round(sum(bool(r["auto_safe"]) for r in automatic) / len(automatic), 3)
        if automatic
        else None,
        "auto_coverage": round(sum(r["automatic"] for r in safe) / len(safe), 3) if safe else None,
        "automatic": len(automatic),
        "escalated": sum(r["action"] == "escalate" for r in rows),
        "confusions": dict(
            Counter(f"{r['true_class']}->{r['class']}" for r in labelled if r["class"] != r["true_class"]).most_common(
                10
            )
        ),
        "per_class": per_class,
    }
