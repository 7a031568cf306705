"""`medic eval`'s arithmetic and its reruns, without a database: scoring, calibration, the
rewrite that makes a recurrence, and the picture."""

from __future__ import annotations

import re
import struct

import pytest

from medic.contract import ERROR_CLASSES
from medic.diagnose import memory
from medic_dev.evaluate import (
    RECURRENCE_SUFFIX,
    calibration,
    confusion_matrix,
    model_scores,
    plot,
    recurrence_case,
    rerun_text,
    safety,
    score,
)

# hand-written: a worker's log of a failed load, with what changes between runs and what does not
LOG = """[2024-11-03 02:14:07,118] {taskinstance.py:2905} ERROR - Task failed with exception
Traceback (most recent call last):
  File "/opt/airflow/dags/etl/load_orders.py", line 88, in load_orders
    conn = connect(host, port=5432)
psycopg.OperationalError: connection to server on port 5432 failed: request 7f3a9c2e44b1d0aa timed out after 30 s
DETAIL: trace 3f2b1c9e-1a2b-4c3d-9e8f-0123456789ab, pid 48213, batch 90817263, HTTP 503, errno 111
retry of request 7f3a9c2e44b1d0aa scheduled at 02:14:37"""


def row(
    true: str | None,
    decided: str,
    *,
    auto_safe: bool | None = False,
    automatic: bool = False,
    confidence: float = 0.5,
    action: str = "fix_code",
    true_action: str = "fix_code",
    model: str | None = None,
    evidence: str | None = None,
    refused: str | None = None,
) -> dict:
    return {
        "id": f"{true}-{decided}",
        "true_class": true,
        "class": decided,
        "evidence_class": evidence or decided,
        "model_class": model,
        "true_action": true_action,
        "action": action,
        "auto_safe": auto_safe,
        "automatic": automatic,
        "confidence": confidence,
        "evidence_confidence": confidence,
        "model_confidence": confidence if model else None,
        "refused": refused,
        "route": "auto" if automatic else "approval",
    }


# ---- reruns ---------------------------------------------------------------------------------------
def test_a_rerun_has_new_times_and_ids_and_the_same_failure() -> None:
    rerun = rerun_text(LOG)
    assert rerun != LOG
    # the timestamp moves by a fixed 3 days 5:17:29, its format kept; the sub-second digits change
    assert re.match(r"\[2024-11-06 07:31:36,\d{3}\]", rerun) and not rerun.startswith("[2024-11-06 07:31:36,118]")
    assert "07:31:36" in rerun.splitlines()[0] and "07:32:06" in rerun.splitlines()[-1]  # a bare clock time too
    for changed in ("3f2b1c9e-1a2b-4c3d-9e8f-0123456789ab", "7f3a9c2e44b1d0aa", "pid 48213", "90817263"):
        assert changed not in rerun
    assert re.search(r"trace [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12},", rerun)
    assert re.search(r"pid \d{5},", rerun) and re.search(r"batch [1-9]\d{7},", rerun)  # same size of number
    # what the failure is stays: codes, ports, limits, code locations
    for kept in ("port 5432", "port=5432", "line 88", "after 30 s", "HTTP 503", "errno 111", "load_orders"):
        assert kept in rerun
    # an id seen twice is rewritten the same way twice, and the same log always gives the same rerun
    new_id = re.search(r"request ([0-9a-f]{16}) timed out", rerun).group(1)
    assert f"retry of request {new_id}" in rerun
    assert rerun_text(LOG) == rerun


def test_a_rerun_keeps_the_fingerprint() -> None:
    original, rerun = memory.prepare(LOG), memory.prepare(rerun_text(LOG))
    assert original.fingerprint is not None
    assert rerun.fingerprint == original.fingerprint
    assert rerun.text != original.text


def test_text_without_times_or_ids_recurs_unchanged() -> None:
    text = "KeyError: 'customer_id' in transform step (HTTP 404 from the lookup, exit code 2)"
    assert rerun_text(text) == text


def test_an_impossible_date_is_rewritten_without_failing() -> None:
    rerun = rerun_text("at 2024-13-45 25:61:00 the job broke")
    assert rerun != "at 2024-13-45 25:61:00 the job broke"
    assert re.fullmatch(r"at \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} the job broke", rerun)


def test_a_recurrence_case_keeps_the_labels_under_a_new_id() -> None:
    case = {"id": "c1", "log": LOG, "error_class": "network_transient", "action": "retry", "auto_safe": True}
    again = recurrence_case(case)
    assert again["id"] == f"c1{RECURRENCE_SUFFIX}" and again["recurrence_of"] == "c1"
    assert again["log"] == rerun_text(LOG)
    assert (again["error_class"], again["action"], again["auto_safe"]) == ("network_transient", "retry", True)


# ---- scoring --------------------------------------------------------------------------------------
def test_safety_counts_the_automatic_fix_of_a_case_that_needed_a_person() -> None:
    rows = [
        row("timeout", "timeout", auto_safe=True, automatic=True),
        row("timeout", "timeout", auto_safe=True, automatic=False),
        row("code_bug", "network_transient", auto_safe=False, automatic=True),  # the unforgivable one
        row("code_bug", "code_bug", auto_safe=False),
        row(None, "code_bug", auto_safe=None),  # unlabelled: not counted
    ]
    result = safety(rows)
    assert result == {
        "n": 4,
        "auto_safe_cases": 2,
        "automatic": 2,
        "auto_precision": 0.5,
        "auto_coverage": 0.5,
        "unsafe_automatic": 1,
    }
    assert score(rows)["unsafe_automatic"] == 1


def test_safety_without_automatic_decisions_has_no_precision() -> None:
    result = safety([row("timeout", "timeout", auto_safe=True), row("code_bug", "code_bug")])
    assert result["auto_precision"] is None and result["auto_coverage"] == 0.0 and result["unsafe_automatic"] == 0


def test_score_per_class_precision_and_recall() -> None:
    rows = [
        row("timeout", "timeout"),
        row("timeout", "network_transient"),
        row("network_transient", "network_transient"),
        row("code_bug", "code_bug", action="escalate"),
    ]
    result = score(rows)
    assert result["n"] == 4 and result["class_accuracy"] == 0.75
    assert result["per_class"]["network_transient"]["precision"] == 0.5
    assert result["per_class"]["network_transient"]["recall"] == 1.0
    assert result["per_class"]["timeout"] == {
        "n": 2,
        "predicted": 1,
        "correct": 1,
        "precision": 1.0,
        "recall": 0.5,
        "f1": 0.667,
    }
    assert result["confusions"] == {"timeout->network_transient": 1}
    assert result["escalated"] == 1 and result["action_accuracy"] == 0.75


def test_calibration_bins_and_expected_calibration_error() -> None:
    pairs = [(0.1, False), (0.15, True), (0.5, True), (0.9, True), (0.95, True), (1.0, False)]
    result = calibration(pairs)
    bins = result["bins"]
    assert [b["range"] for b in bins] == [[0.0, 0.2], [0.2, 0.4], [0.4, 0.6], [0.6, 0.8], [0.8, 1.0]]
    assert [b["n"] for b in bins] == [2, 0, 1, 0, 3]  # a confidence of 1.0 falls in the last bin
    assert bins[0]["mean_confidence"] == 0.125 and bins[0]["accuracy"] == 0.5
    assert bins[1]["mean_confidence"] is None and bins[1]["accuracy"] is None
    assert bins[4]["mean_confidence"] == 0.95 and bins[4]["accuracy"] == 0.667
    # (2 * |0.5 - 0.125| + 1 * |1 - 0.5| + 3 * |2/3 - 0.95|) / 6
    assert result["ece"] == pytest.approx((0.75 + 0.5 + 3 * (0.95 - 2 / 3)) / 6, abs=1e-3)


def test_calibration_of_a_confidence_that_means_what_it_says() -> None:
    pairs = [(0.7, True)] * 7 + [(0.7, False)] * 3
    assert calibration(pairs)["ece"] == 0.0
    assert calibration([])["ece"] is None


def test_model_scores_agreement_and_accuracy() -> None:
    rows = [
        row("timeout", "timeout", model="timeout", evidence="timeout"),
        row("timeout", "network_transient", model="network_transient", evidence="timeout"),
        row("code_bug", "code_bug", model="code_bug", evidence="config_error"),
        row("code_bug", "code_bug", model=None, evidence="code_bug", refused="output was not JSON"),
    ]
    result = model_scores(rows)
    assert result["answered"] == 3 and result["refused"] == 1
    assert result["agreement_with_evidence"] == 0.333  # one of the three answers matches retrieval's class
    assert result["model_class_accuracy"] == 0.5  # a refused output is not a right class
    assert result["evidence_class_accuracy"] == 0.75  # retrieval was right on three of four
    assert sum(b["n"] for b in result["model_calibration"]["bins"]) == 3


def test_confusion_matrix_is_true_by_decided_over_every_class() -> None:
    rows = [row("timeout", "timeout"), row("timeout", "network_transient"), row("timeout", "network_transient")]
    matrix = confusion_matrix(rows)
    assert len(matrix) == len(ERROR_CLASSES) == 13 and all(len(line) == 13 for line in matrix)
    t, n = ERROR_CLASSES.index("timeout"), ERROR_CLASSES.index("network_transient")
    assert matrix[t][t] == 1 and matrix[t][n] == 2
    assert sum(map(sum, matrix)) == 3


def test_plot_writes_a_png_with_both_panels(tmp_path) -> None:
    rows = [
        row(cls, ERROR_CLASSES[(i + (index % 3 == 0)) % 13], confidence=(index % 10) / 10 + 0.05)
        for i, cls in enumerate(ERROR_CLASSES)
        for index in range(i, i + 4)
    ]
    report = {
        **score(rows),
        "calibration": calibration([(r["confidence"], r["class"] == r["true_class"]) for r in rows]),
    }
    report |= {"leave_one_out": True, "cases": rows}
    report["recurrences"] = {"calibration": calibration([(0.9, True), (0.95, True), (0.3, False)])}
    target = plot(report, tmp_path / "eval.png")
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width > 1000 and height > 500
    assert len(data) > 30_000  # two panels of labels, cells and curves, not an empty canvas
