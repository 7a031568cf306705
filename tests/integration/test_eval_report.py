"""`medic eval --recurrences`: a rerun of a verified failure is measured apart from novel
failures, and automation follows the labels' safety, never just the match."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from medic.diagnose.embedding import get_embedder
from medic.diagnose.knowledge import load_runbooks
from medic_dev.evaluate import RECURRENCE_SUFFIX, evaluate

# hand-written failures, each with what a rerun changes (times, process and transaction ids)
CASES = [
    {
        "id": "deadlock",
        "log": (
            "[2025-02-11 04:12:55,201] {taskinstance.py:3311} ERROR - Task failed with exception\n"
            "psycopg.errors.DeadlockDetected: deadlock detected\n"
            "DETAIL:  Process 48213 waits for ShareLock on transaction 9182736; blocked by process 48299.\n"
            "Process 48299 waits for ShareLock on transaction 9182741; blocked by process 48213."
        ),
        "error_class": "db_contention",
        "action": "retry",
        "auto_safe": True,
    },
    {
        "id": "missing-column",
        "log": (
            "[2025-02-11 04:13:09,877] {taskinstance.py:3311} ERROR - Task failed with exception\n"
            "Traceback (most recent call last):\n"
            '  File "/opt/airflow/dags/sales/build_report.py", line 57, in summarise\n'
            "    totals[row['region_code']] += row['amount']\n"
            "KeyError: 'region_code'\n"
            "run_id=scheduled__2025-02-11T04:00:00+00:00 pid 51877"
        ),
        "error_class": "code_bug",
        "action": "fix_code",
        "auto_safe": False,
    },
    {
        "id": "refused",
        "log": (
            "[2025-02-11 04:15:42,030] {http.py:188} ERROR - requests.exceptions.ConnectionError: "
            "HTTPConnectionPool(host='inventory.internal', port=8443): Max retries exceeded with url: /v2/stock "
            "(Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f2b9c1d0e50>: "
            "Failed to establish a new connection: [Errno 111] Connection refused'))"
        ),
        "error_class": "network_transient",
        "action": "retry",
        "auto_safe": True,
    },
]

SAFETY_KEYS = {"n", "auto_safe_cases", "automatic", "auto_precision", "auto_coverage", "unsafe_automatic"}


def test_a_recurrence_of_a_verified_safe_case_is_automatic_and_of_an_unsafe_one_is_not(kb_conn) -> None:
    result = evaluate(kb_conn, get_embedder(), load_runbooks(), CASES, recurrences=True)
    reruns = {row["recurrence_of"]: row for row in result["recurrences"]["cases"]}
    assert set(reruns) == {"deadlock", "missing-column", "refused"}
    for row in reruns.values():  # each rerun reads differently and is still the same failure
        assert row["id"].endswith(RECURRENCE_SUFFIX) and row["text_changed"] and row["same_fingerprint"]
        assert row["top_match"] == f"eval-case:{row['recurrence_of']}" and row["top_match_via"] == "fingerprint"
    assert reruns["deadlock"]["automatic"], reruns["deadlock"]["reason"]
    assert reruns["refused"]["automatic"], reruns["refused"]["reason"]
    assert not reruns["missing-column"]["automatic"]  # verified, recurring, and still a person's call
    assert reruns["missing-column"]["route"] != "auto"
    recurrences = result["recurrences"]
    assert recurrences["automatic"] == 2 and recurrences["unsafe_automatic"] == 0
    assert recurrences["auto_precision"] == 1.0 and recurrences["auto_coverage"] == 1.0
    assert recurrences["text_changed"] == recurrences["same_fingerprint"] == 3
    # the cases themselves, with memory the runbooks only, are novel: nothing verified, nothing automatic
    assert result["novel"]["automatic"] == 0 and result["novel"]["memory"] == "the runbooks only"
    assert not any(str(row["top_match"]).startswith("eval-case:") for row in result["cases"])
    assert kb_conn.execute("SELECT count(*) FROM medic.knowledge").fetchone()[0] == 0


def test_the_report_keeps_novel_and_recurring_failures_apart(kb_conn) -> None:
    result = evaluate(kb_conn, get_embedder(), load_runbooks(), CASES, leave_one_out=True, recurrences=True)
    for key in ("n", "class_accuracy", "class_macro_f1", "action_accuracy", "auto_precision", "auto_coverage"):
        assert key in result
    assert set(result["novel"]) >= SAFETY_KEYS and set(result["recurrences"]) >= SAFETY_KEYS
    assert result["novel"]["n"] == result["recurrences"]["n"] == 3
    assert "leave-one-out" in result["novel"]["memory"] and "leave-one-out" in result["recurrences"]["memory"]
    # with every original in memory a rerun still finds its own first
    assert all(row["top_match"] == f"eval-case:{row['recurrence_of']}" for row in result["recurrences"]["cases"])
    assert all(row["id"] != row["top_match"].removeprefix("eval-case:") for row in result["cases"])
    assert result["recurrences"]["unsafe_automatic"] == 0
    bins = result["calibration"]["bins"]
    assert len(bins) == 5 and sum(b["n"] for b in bins) == 3 and result["calibration"]["ece"] is not None


def test_cli_writes_the_plot_and_ends_with_one_json_object(embedded, it_db, tmp_path) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps(case) + "\n" for case in CASES))
    picture = tmp_path / "eval.png"
    env = {**os.environ, "AIRFLOW_CONN_MEDIC_DB": json.dumps({**embedded.medic_conn(), "schema": "medic_it"})}
    command = [sys.executable, "-m", "medic.cli", "eval", "--cases", str(cases), "--leave-one-out", "--recurrences"]
    command += ["--plot", str(picture)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["n"] == 3 and result["recurrences"]["n"] == 3 and result["plot"] == str(picture)
    assert "cases" not in result and "cases" not in result["recurrences"]  # --details was not asked for
    data = picture.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000
