"""`medic eval`: measure the diagnosis path on labelled cases, in numbers a person can read.

Cases are JSON lines in the format of shared/failures/dev.jsonl: ``id`` and ``log`` are
required; ``error_class``, ``action`` and ``auto_safe`` are the labels when present. Each
case goes through the same path medic_diagnose uses (medic.memory) and the same policy
(medic.policy.gate). Everything the evaluation adds to the knowledge base is rolled back.

Two situations are measured, and reported apart because they fail differently:

- **novel failures**, the cases themselves. Plain, memory is the runbooks only; with
  ``leave_one_out`` the other labelled cases are verified past incidents too, and a case never
  sees itself.
- **recurrences** (``recurrences``): each labelled case again as a rerun would log it (new
  timestamps, ids, long numbers; :func:`rerun_text`), with the original stored as a verified
  resolved incident. Plain, a recurrence sees only its own original; with ``leave_one_out`` it
  sees every original.

An automatic decision on a case labelled not auto-safe is the one mistake users never forgive:
each section counts those (``unsafe_automatic``) beside auto precision and auto coverage.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medic.contract import ACTIONS, ERROR_CLASSES, Diagnosis
from medic.diagnose import generation, knowledge, memory
from medic.diagnose.diagnosis import Opinions
from medic.diagnose.generation import model_diagnosis
from medic.diagnose.knowledge import Entry, Match, Runbook
from medic.llm.base import GenerationSettings
from medic.policy.gate import Evidence, Thresholds, decide

if TYPE_CHECKING:
    import psycopg

    from medic.diagnose.embedding import Embedder

Generate = Callable[[dict[str, Any]], dict[str, Any]]
Result = tuple[Opinions, Diagnosis, list[Match]]

RECURRENCE_SUFFIX = "~rerun"
CALIBRATION_BINS = 5


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


def _storable(case: dict[str, Any]) -> bool:
    """A case whose labels make a verified past incident (and so a recurrence worth measuring)."""
    return case.get("error_class") in ERROR_CLASSES and case.get("action") in ACTIONS


# ---- recurrences: the same failure, logged again --------------------------------------------------
# What differs between two runs of the same failure: when it happened and the ids the run was
# given. Each rule rewrites only text that medic's fingerprint masks (medic.diagnose.fingerprint),
# so a rerun keeps its fingerprint. Numbers of up to five digits (status codes, errno, SQLSTATE,
# exit codes, ports, limits, line numbers, attempt counts) stay, because they are the failure,
# except one that names a process, task, job or transaction; longer ones (ids, epochs) change.
_SHIFT = timedelta(days=3, hours=5, minutes=17, seconds=29)
_TS = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?(?:[.,]\d+)?"
_VARYING = re.compile(
    r"(?P<uuid>\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)"
    r"|(?P<run_id>\b(?:manual|scheduled|asset_triggered|backfill)__[^\s'\"]+)"
    rf"|(?P<ts>\b{_TS})"
    r"|(?P<date>\b\d{4}-\d{2}-\d{2}\b)"
    r"|(?P<clock>(?<![\w.:])\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)"
    r"|(?P<hex>\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{12,}\b)"
    r"|(?P<named>(?i:\b(?:pid|process|task|job|executor|container|partition|worker|thread|request|transaction)\b)"
    r"[ =:#]{1,3})(?P<named_number>\d+)\b"
    r"|(?P<long>(?<![\w.])\d{6,})"
)
_TS_ANYWHERE = re.compile(_TS)
_DIGITS = re.compile(r"\d+")


def _stream(token: str) -> str:
    return hashlib.sha256(f"medic-eval-rerun\x1f{token}".encode()).hexdigest()


def _new_digits(token: str) -> str:
    """Digits of the same length (and so about the same magnitude), different, the same for the same token."""
    stream = _stream(token)
    digits = [str(int(c, 16) % 10) for c in stream]
    out = (digits * (len(token) // len(digits) + 1))[: len(token)]
    if token[0] != "0" and len(token) > 1:
        out[0] = str(int(stream[0], 16) % 9 + 1)
    text = "".join(out)
    if text == token:
        text = text[:-1] + str((int(text[-1]) + 1) % 10)
    return text


def _new_hex(token: str) -> str:
    prefix, body = ("0x", token[2:]) if token[:2].lower() == "0x" else ("", token)
    stream = _stream(token)
    text = (stream * (len(body) // len(stream) + 1))[: len(body)]
    if text == body.lower():
        text = text[:-1] + ("0" if text[-1] != "0" else "1")
    return prefix + (text.upper() if body.isupper() else text)


def _new_fraction(fraction: str) -> str:
    return fraction[0] + _new_digits(fraction[1:]) if fraction else ""


def _shift_timestamp(text: str) -> str:
    """The same timestamp format, ``_SHIFT`` later; digits rewritten where it is no valid date."""
    head, sep, tail = text[:10], text[10], text[11:]
    clock, fraction = re.match(r"([\d:]+)([.,]\d+)?", tail).groups()  # type: ignore[union-attr]
    layout = "%H:%M:%S" if clock.count(":") == 2 else "%H:%M"
    try:
        moved = datetime.strptime(f"{head} {clock}", f"%Y-%m-%d {layout}") + _SHIFT
    except ValueError:
        return _DIGITS.sub(lambda m: _new_digits(m.group()), text)
    return f"{moved:%Y-%m-%d}{sep}{moved.strftime(layout)}{_new_fraction(fraction or '')}"


def _shift_date(text: str) -> str:
    try:
        return f"{datetime.strptime(text, '%Y-%m-%d') + _SHIFT:%Y-%m-%d}"
    except ValueError:
        return _DIGITS.sub(lambda m: _new_digits(m.group()), text)


def _shift_clock(text: str) -> str:
    clock, fraction = text[:8], text[8:]
    try:
        moved = datetime.strptime(clock, "%H:%M:%S") + _SHIFT
    except ValueError:
        return _DIGITS.sub(lambda m: _new_digits(m.group()), text)
    return f"{moved:%H:%M:%S}{_new_fraction(fraction)}"


def _rewrite(match: re.Match[str]) -> str:
    kind, token = match.lastgroup, match.group()
    if kind == "uuid":
        new = _new_hex(token.replace("-", ""))
        return "-".join(new[a:b] for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32)))
    if kind == "run_id":
        moved = _TS_ANYWHERE.sub(lambda m: _shift_timestamp(m.group()), token)
        return moved if moved != token else _DIGITS.sub(lambda m: _new_digits(m.group()), token)
    if kind == "ts":
        return _shift_timestamp(token)
    if kind == "date":
        return _shift_date(token)
    if kind == "clock":
        return _shift_clock(token)
    if kind == "hex":
        return _new_digits(token) if token.isdigit() else _new_hex(token)
    if kind == "named_number":
        return match.group("named") + _new_digits(match.group("named_number"))
    return _new_digits(token)  # long


def rerun_text(log: str) -> str:
    """The log of the same failure in a later run: new timestamps, ids and long numbers, the rest kept.

    Deterministic (the same log always gives the same rerun) and consistent within a log (an id
    that appears twice is rewritten the same way both times)."""
    return _VARYING.sub(_rewrite, log)


def recurrence_case(case: dict[str, Any]) -> dict[str, Any]:
    """A labelled case as it recurs: the same labels, a new id, the rerun's log."""
    return {
        **case,
        "id": f"{case['id']}{RECURRENCE_SUFFIX}",
        "log": rerun_text(case["log"]),
        "recurrence_of": case["id"],
    }


# ---- the evaluation -------------------------------------------------------------------------------
def _past_incident(case: dict[str, Any], item: memory.Prepared) -> Entry:
    """A labelled case as verified memory: resolved by its label's action, with its own fingerprint."""
    return Entry(
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


def evaluate(
    conn: psycopg.Connection,
    embedder: Embedder,
    runbooks: Sequence[Runbook],
    cases: Sequence[dict[str, Any]],
    *,
    leave_one_out: bool = False,
    recurrences: bool = False,
    thresholds: Thresholds | None = None,
    generate: Generate | None = None,
    settings: GenerationSettings | None = None,
) -> dict[str, Any]:
    """Score the path on labelled cases; with ``generate`` (a worker call) the model diagnoses too.

    The top-level keys score the cases themselves (novel failures); ``novel`` and, with
    ``recurrences``, ``recurrences`` hold each situation's automation numbers apart."""
    t = thresholds or Thresholds()
    prepared = [memory.prepare(case["log"]) for case in cases]
    stored = [(case, item) for case, item in zip(cases, prepared, strict=True) if _storable(case)]
    stored_keys = [_case_key(case) for case, _ in stored]
    reruns = [recurrence_case(case) for case, _ in stored] if recurrences else []
    rerun_prepared = [memory.prepare(case["log"]) for case in reruns]
    with conn.transaction(force_rollback=True):  # nothing the evaluation adds is kept
        memory.refresh_runbooks(conn, embedder, runbooks)
        if not leave_one_out:  # memory is the runbooks only: diagnose before any case is stored
            results = memory.diagnose_prepared(conn, embedder, runbooks, prepared)
        if leave_one_out or recurrences:
            knowledge.upsert(conn, embedder, [_past_incident(case, item) for case, item in stored])
        if leave_one_out:
            results = memory.diagnose_prepared(
                conn, embedder, runbooks, prepared, exclude_keys=[[_case_key(c)] for c in cases]
            )
        rerun_results: list[Result] = []
        if reruns:
            # plain: a recurrence sees its own original only; leave-one-out: every original
            exclude = [[] if leave_one_out else [k for k in stored_keys if k != _case_key(case)] for case, _ in stored]
            rerun_results = memory.diagnose_prepared(conn, embedder, runbooks, rerun_prepared, exclude_keys=exclude)
    generated: dict[str, Any] = {}
    if generate is not None:
        request = _generation_request(
            runbooks,
            [*cases, *reruns],
            [*prepared, *rerun_prepared],
            [*results, *rerun_results],
            settings or GenerationSettings(),
        )
        generated = generate(request)
    outputs = {r["incident_id"]: r for r in generated.get("results", [])}
    with_model = generate is not None
    rows = [_row(c, p, r, runbooks, t, outputs, with_model) for c, p, r in zip(cases, prepared, results, strict=True)]
    report: dict[str, Any] = {
        **score(rows),
        "calibration": calibration(
            [(r["evidence_confidence"], r["evidence_class"] == r["true_class"]) for r in _labelled(rows)]
        ),
        "leave_one_out": leave_one_out,
        "model": embedder.model_id,
        "novel": {
            "memory": "the runbooks and the other labelled cases (leave-one-out)"
            if leave_one_out
            else "the runbooks only",
            **safety(rows),
        },
        "cases": rows,
    }
    if recurrences:
        original = {case["id"]: item for case, item in stored}
        rerun_rows = []
        for case, item, result in zip(reruns, rerun_prepared, rerun_results, strict=True):
            row = _row(case, item, result, runbooks, t, outputs, with_model)
            row["recurrence_of"] = case["recurrence_of"]
            row["same_fingerprint"] = (
                item.fingerprint is not None and item.fingerprint == original[case["recurrence_of"]].fingerprint
            )
            row["text_changed"] = item.text != original[case["recurrence_of"]].text
            rerun_rows.append(row)
        report["recurrences"] = {
            "memory": "every labelled case as a verified incident (leave-one-out)"
            if leave_one_out
            else "each case's own original as a verified incident",
            **safety(rerun_rows),
            "text_changed": sum(r["text_changed"] for r in rerun_rows),
            "same_fingerprint": sum(r["same_fingerprint"] for r in rerun_rows),
            "class_accuracy": _share(r["class"] == r["true_class"] for r in _labelled(rerun_rows)),
            "action_accuracy": _share(r["action"] == r["true_action"] for r in _labelled(rerun_rows)),
            "routes": dict(Counter(r["route"] for r in rerun_rows)),
            "calibration": calibration(
                [(r["evidence_confidence"], r["evidence_class"] == r["true_class"]) for r in _labelled(rerun_rows)]
            ),
            "cases": rerun_rows,
        }
    if with_model:
        prompts = len(cases) + len(reruns)
        seconds = generated.get("seconds")
        load = generated.get("load_seconds")
        report["generation"] = {
            "backend": generated.get("backend"),
            "model": generated.get("model"),
            "python": (generated.get("environment") or {}).get("python"),
            "diagnoses": prompts,
            "batch_seconds": seconds,
            "load_seconds": load,
            "seconds_per_diagnosis": round(seconds / prompts, 3) if seconds and prompts else None,
            "seconds_per_diagnosis_after_load": round((seconds - load) / prompts, 3)
            if seconds and load is not None and prompts
            else None,
            "diagnoses_per_second": round(prompts / seconds, 3) if seconds else None,
            **model_scores(rows),
        }
        if recurrences:
            report["recurrences"]["generation"] = model_scores(report["recurrences"]["cases"])
    return report


def _row(
    case: dict[str, Any],
    item: memory.Prepared,
    result: Result,
    runbooks: Sequence[Runbook],
    t: Thresholds,
    outputs: dict[str, dict[str, Any]],
    with_model: bool,
) -> dict[str, Any]:
    """One case's outcome: the evidence's diagnosis, the model's (when one ran) and the policy's route."""
    opinions, retrieval, matches = result
    model, problem = None, None
    if with_model:
        model, problem, _ = model_diagnosis(
            retrieval, outputs.get(case["id"]), item.text, [m.source_key for m in matches if m.kind == "incident"]
        )
    verdict = decide(Evidence(retrieval, opinions, matches, model, problem), runbooks, t)
    d = verdict.diagnosis
    return {
        "id": case["id"],
        "true_class": case.get("error_class"),
        "class": d.error_class,
        "evidence_class": retrieval.error_class,
        "model_class": model.error_class if model is not None and problem is None else None,
        "true_action": case.get("action"),
        "action": d.action,
        "auto_safe": case.get("auto_safe"),
        "automatic": verdict.automatic,
        "confidence": d.confidence,
        "evidence_confidence": retrieval.confidence,
        "model_confidence": model.confidence if model is not None and problem is None else None,
        "top_match": matches[0].source_key if matches else None,
        "top_match_via": matches[0].via if matches else None,
        "refused": problem,
        "route": verdict.route,
        "reason": verdict.reason,
    }


def _generation_request(
    runbooks: Sequence[Runbook],
    cases: Sequence[dict[str, Any]],
    prepared: Sequence[memory.Prepared],
    results: Sequence[Result],
    settings: GenerationSettings,
) -> dict[str, Any]:
    """The same prompts medic_diagnose builds, one per case, in one batch."""
    prefix = generation.prompt_prefix(runbooks)
    requests = []
    for case, item, (_, retrieval, matches) in zip(cases, prepared, results, strict=True):
        similar = generation.neighbours(matches)
        prompt = generation.incident_prompt(
            prefix,
            item,
            dag_id="eval",
            task_id=str(case["id"]),
            operator=case.get("operator_or_library"),
            similar=similar,
            retrieval=retrieval,
        )
        requests.append({"incident_id": case["id"], "prompt": prompt})
    return {"settings": asdict(settings), "schema": Diagnosis.model_json_schema(), "prompts": requests}


# ---- scoring (plain functions of the rows: unit-tested without a database) -------------------------
def _labelled(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["true_class"]]


def _share(flags: Iterable[object]) -> float | None:
    values = [bool(f) for f in flags]
    return round(sum(values) / len(values), 3) if values else None


def safety(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How far automation went, and whether it ever acted where a person was needed.

    ``auto_coverage``: the share of auto-safe cases decided automatically; ``auto_precision``:
    the share of automatic decisions on auto-safe cases; ``unsafe_automatic``: automatic
    decisions on cases labelled not auto-safe (must be 0)."""
    labelled = [r for r in rows if r["auto_safe"] is not None]
    automatic = [r for r in labelled if r["automatic"]]
    safe = [r for r in labelled if r["auto_safe"]]
    return {
        "n": len(labelled),
        "auto_safe_cases": len(safe),
        "automatic": len(automatic),
        "auto_precision": _share(r["auto_safe"] for r in automatic),
        "auto_coverage": _share(r["automatic"] for r in safe),
        "unsafe_automatic": sum(1 for r in automatic if not r["auto_safe"]),
    }


def score(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Class and action accuracy, per-class precision and recall, and the automation numbers."""
    labelled = _labelled(rows)
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
        "class_accuracy": _share(r["class"] == r["true_class"] for r in labelled),
        "class_macro_f1": round(sum(f1s) / len(f1s), 3) if f1s else None,
        "action_accuracy": _share(r["action"] == r["true_action"] for r in labelled),
        "auto_precision": _share(r["auto_safe"] for r in automatic),
        "auto_coverage": _share(r["automatic"] for r in safe),
        "automatic": len(automatic),
        "unsafe_automatic": sum(1 for r in automatic if not r["auto_safe"]),
        "escalated": sum(r["action"] == "escalate" for r in rows),
        "confusions": dict(
            Counter(f"{r['true_class']}->{r['class']}" for r in labelled if r["class"] != r["true_class"]).most_common(
                10
            )
        ),
        "per_class": per_class,
    }


def calibration(pairs: Sequence[tuple[float, bool]], bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Whether a confidence means what it says: per equal-width bin, the mean confidence and the
    share correct, and the expected calibration error (their gap, weighted by the bin's size)."""
    edges = [i / bins for i in range(bins + 1)]
    grouped: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for confidence, correct in pairs:
        c = min(max(float(confidence), 0.0), 1.0)
        grouped[min(int(c * bins), bins - 1)].append((c, bool(correct)))
    table = []
    gap = 0.0
    for index, members in enumerate(grouped):
        mean = sum(c for c, _ in members) / len(members) if members else None
        accuracy = sum(ok for _, ok in members) / len(members) if members else None
        if members:
            gap += len(members) * abs(accuracy - mean)  # type: ignore[operator]
        table.append(
            {
                "range": [round(edges[index], 3), round(edges[index + 1], 3)],
                "n": len(members),
                "mean_confidence": round(mean, 3) if mean is not None else None,
                "accuracy": round(accuracy, 3) if accuracy is not None else None,
            }
        )
    return {"bins": table, "ece": round(gap / len(pairs), 3) if pairs else None}


def model_scores(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The model beside the evidence: how often it agrees with retrieval, how often it is right,
    how often its output was refused, and how its confidence is calibrated."""
    labelled = _labelled(rows)
    answered = [r for r in rows if r["model_class"] is not None]
    answered_labelled = [r for r in labelled if r["model_class"] is not None]
    return {
        "answered": len(answered),
        "refused": sum(1 for r in rows if r["refused"]),
        "agreement_with_evidence": _share(r["model_class"] == r["evidence_class"] for r in answered),
        # a refused output counts as wrong: the model did not give the class
        "model_class_accuracy": _share(r["model_class"] == r["true_class"] for r in labelled),
        "evidence_class_accuracy": _share(r["evidence_class"] == r["true_class"] for r in labelled),
        "model_calibration": calibration(
            [(r["model_confidence"], r["model_class"] == r["true_class"]) for r in answered_labelled]
        ),
    }


# ---- the picture ----------------------------------------------------------------------------------
def confusion_matrix(rows: Sequence[dict[str, Any]], classes: Sequence[str] = ERROR_CLASSES) -> list[list[int]]:
    """Counts, true class by row and decided class by column, in ``classes`` order."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = [[0] * len(classes) for _ in classes]
    for r in rows:
        if r["true_class"] in index and r["class"] in index:
            matrix[index[r["true_class"]]][index[r["class"]]] += 1
    return matrix


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """A PNG: the confusion matrix of the cases and the reliability diagram (recurrences too, when measured)."""
    # only --plot needs matplotlib (a second of imports): imported here, drawn off-screen
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = report["cases"]
    matrix = confusion_matrix(rows)
    figure, (left, right) = plt.subplots(1, 2, figsize=(17, 7.5), gridspec_kw={"width_ratios": [1.35, 1]})
    image = left.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=left, fraction=0.046, pad=0.04)
    ticks = range(len(ERROR_CLASSES))
    left.set_xticks(ticks, ERROR_CLASSES, rotation=60, ha="right", fontsize=8)
    left.set_yticks(ticks, ERROR_CLASSES, fontsize=8)
    left.set_xlabel("decided class")
    left.set_ylabel("true class")
    peak = max((max(line) for line in matrix), default=0)
    for i, line in enumerate(matrix):
        for j, count in enumerate(line):
            if count:
                colour = "white" if count > peak / 2 else "black"
                left.text(j, i, str(count), ha="center", va="center", fontsize=8, color=colour)
    mode = "leave-one-out" if report.get("leave_one_out") else "runbooks only"
    left.set_title(f"confusion: {report['n']} cases ({mode}), class accuracy {report['class_accuracy']}")

    right.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    series = [("novel", report["calibration"], "tab:blue", "o")]
    if "recurrences" in report:
        series.append(("recurrences", report["recurrences"]["calibration"], "tab:orange", "s"))
    if "generation" in report:
        series.append(("model", report["generation"]["model_calibration"], "tab:green", "^"))
    for name, table, colour, marker in series:
        filled = [b for b in table["bins"] if b["n"]]
        xs = [b["mean_confidence"] for b in filled]
        ys = [b["accuracy"] for b in filled]
        right.plot(xs, ys, marker=marker, color=colour, label=f"{name} (ECE {table['ece']})")
        for b in filled:
            right.annotate(
                f"n={b['n']}",
                (b["mean_confidence"], b["accuracy"]),
                textcoords="offset points",
                xytext=(5, -12),
                fontsize=7,
                color=colour,
            )
    right.set_xlim(0, 1)
    right.set_ylim(0, 1.05)
    right.set_xlabel("mean confidence in bin")
    right.set_ylabel("share with the right class")
    right.set_title("reliability: confidence against the share right (evidence; model when one ran)")
    right.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    target = Path(path)
    figure.savefig(target, dpi=110)
    plt.close(figure)
    return target
