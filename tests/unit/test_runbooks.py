from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from medic.contract import ACTIONS, ERROR_CLASSES
from medic.diagnose.knowledge import RunbookError, load_runbooks, parse_runbook, runbook_dir


def test_one_runbook_per_class_each_with_an_allowed_action_signals_and_examples() -> None:
    books = load_runbooks()
    assert sorted(b.error_class for b in books) == sorted(ERROR_CLASSES)
    for book in books:
        assert book.default_action in ACTIONS
        assert len(book.signals) >= 5 and len(book.examples) >= 5, book.path
        assert "## What to do" in book.body and "## When not to retry automatically" in book.body
        for pattern in book.signals:
            re.compile(pattern)


def test_only_transient_classes_are_auto_safe() -> None:
    auto = {b.error_class for b in load_runbooks() if b.auto_safe}
    assert auto == {"network_transient", "rate_limited", "upstream_unavailable", "worker_lost", "db_contention"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no front matter", "no YAML front matter"),
        ("---\nerror_class: flaky\ndefault_action: retry\n---\nbody", "is not one of"),
        ("---\nerror_class: timeout\ndefault_action: reboot_prod\n---\nbody", "not an allowed action"),
        ("---\nerror_class: timeout\ndefault_action: retry\nsignals: ['(unclosed']\n---\nbody", "bad signal"),
    ],
)
def test_bad_runbooks_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(RunbookError, match=message):
        parse_runbook("x.md", text)


# ---- the runbooks are knowledge of the ecosystem, not copies of the labelled failures ----------------
SHARED = Path(__file__).resolve().parents[3] / "shared"
DEV_CASES = SHARED / "failures" / "dev.jsonl"
OVERLAP = 40  # characters in a row that a runbook may not share with any labelled log


def _dev_logs() -> list[str]:
    if not DEV_CASES.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{DEV_CASES} is missing: CI must check the runbooks against the labelled failures")
        pytest.skip(f"{DEV_CASES} is not here (outside CI)")
    logs = [json.loads(line)["log"] for line in DEV_CASES.read_text().splitlines() if line.strip()]
    assert logs, f"{DEV_CASES} holds no cases"
    return logs


def _windows(text: str, size: int = OVERLAP) -> set[str]:
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def _copied(folder: Path, seen: set[str]) -> list[str]:
    """Runbook lines (raw, front matter and body) and parsed examples sharing a window with ``seen``."""
    copied = []
    for path in sorted(folder.glob("*.md")):
        text = path.read_text()
        book = parse_runbook(path.name, text)
        pieces = [(f"line {n}", line) for n, line in enumerate(text.splitlines(), start=1)]
        pieces += [(f"example {n}", example) for n, example in enumerate(book.examples, start=1)]
        for where, piece in pieces:
            shared = next((w for w in _windows(piece) if w in seen), None)
            if shared:
                copied.append(f"{path.name} {where}: {shared!r}")
    return copied


def _seen() -> set[str]:
    seen: set[str] = set()
    for log in _dev_logs():
        seen |= _windows(log)
    return seen


def test_no_runbook_line_copies_forty_characters_of_a_labelled_failure() -> None:
    copied = _copied(runbook_dir(), _seen())
    assert not copied, "runbook text copied from dev.jsonl:\n" + "\n".join(copied)


def test_the_overlap_check_catches_a_copied_line_and_spares_a_shorter_one(tmp_path: Path) -> None:
    log = next(log for log in _dev_logs() if len(log.splitlines()[0]) >= OVERLAP)
    fragment = log.splitlines()[0][:OVERLAP]
    body = "---\nerror_class: timeout\ndefault_action: retry\n---\n# t\n"
    (tmp_path / "copied.md").write_text(body + f"seen as: {fragment} here\n")
    (tmp_path / "short.md").write_text(body.replace("timeout", "code_bug") + f"seen as: {fragment[:-1]}|\n")
    found = _copied(tmp_path, _seen())
    assert [f.split(" ", 1)[0] for f in found] == ["copied.md"]


def test_each_runbook_example_reads_as_its_own_class_to_the_fact_scorer() -> None:
    from medic.diagnose.scoring import explain

    misread = []
    for book in load_runbooks():
        for example in book.examples:
            got = explain(None, example).best[0]
            if got != book.error_class:
                misread.append(f"{book.error_class} <- {got}: {example[:80]}")
    assert not misread, "\n".join(misread)
