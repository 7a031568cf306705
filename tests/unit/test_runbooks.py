from __future__ import annotations

import re

import pytest

from medic.contract import ACTIONS, ERROR_CLASSES
from medic.diagnose.knowledge import RunbookError, load_runbooks, parse_runbook


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
