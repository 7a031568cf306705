"""Every planted secret in a corpus of realistic failure lines is removed, and ordinary failure
lines (which the diagnosis reads) come out unchanged.

``tests/data/secrets_corpus.jsonl``: one failure text per row, the secret planted in it, its
format, and whether the task registered the value with Airflow's masker (a Connection password
fetched by a hook). ``tests/data/secrets_corpus_ordinary.txt``: real-looking error lines from
many libraries, one per line, several of them naming credentials without holding one.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from medic.capture.scrub import scrub

DATA = Path(__file__).resolve().parents[1] / "data"
PLACEHOLDER = re.compile(r"\[REDACTED:[a-z_]+\]")
FRAGMENT = 4  # no piece of the secret this long may survive


def _planted() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / "secrets_corpus.jsonl").read_text().splitlines() if line.strip()]


def _ordinary() -> list[str]:
    return [line for line in (DATA / "secrets_corpus_ordinary.txt").read_text().splitlines() if line.strip()]


def _fragments(secret: str) -> set[str]:
    return {secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}


@pytest.fixture(scope="module")
def planted() -> list[dict[str, Any]]:
    from airflow.sdk.log import mask_secret

    rows = _planted()
    for row in rows:
        if row["registered"]:
            mask_secret(row["secret"])  # what BaseHook.get_connection does with a password
    return rows


def test_the_corpus_is_big_diverse_and_well_formed(planted: list[dict[str, Any]]) -> None:
    formats = Counter(row["format"] for row in planted)
    assert len(planted) >= 150 and len(formats) >= 50 and len(_ordinary()) >= 50
    for row in planted:
        assert row["secret"] in row["text"], row["format"]
        # a fragment found elsewhere in the line could not tell a leak from the context
        rest = row["text"].replace(row["secret"], "\0")
        assert not any(f in rest for f in _fragments(row["secret"])), row
        assert not PLACEHOLDER.search(row["text"])


def test_every_planted_secret_is_removed(planted: list[dict[str, Any]]) -> None:
    leaks = []
    for row in planted:
        cleaned = PLACEHOLDER.sub("\0", scrub(row["text"]))
        survived = sorted(f for f in _fragments(row["secret"]) if f in cleaned)
        if survived:
            leaks.append((row["format"], survived[:3], cleaned[:200]))
    assert leaks == [], f"{len(leaks)} of {len(planted)} planted secrets leaked: {leaks}"


def test_ordinary_failure_lines_stay_intact() -> None:
    lines = _ordinary()
    changed = [(line, scrub(line)) for line in lines if scrub(line) != line]
    assert len(changed) <= 0.02 * len(lines), changed


def test_a_16_kib_log_tail_scrubs_well_under_a_second(planted: list[dict[str, Any]]) -> None:
    """Capture runs in the failing task with a 3 s budget and a 16 KiB log tail."""
    ordinary = _ordinary()
    lines = []
    for index, row in enumerate(planted):
        lines += [row["text"], *(ordinary[(index * 4 + k) % len(ordinary)] for k in range(4))]
    tail = "\n".join(lines)[-16384:]
    scrub(tail)  # first call pays for lazy imports (Airflow's masker)
    started = time.process_time()
    cleaned = scrub(tail)
    spent = time.process_time() - started
    assert "[REDACTED:" in cleaned
    assert spent < 0.5, f"{spent:.3f} s CPU for 16 KiB"
