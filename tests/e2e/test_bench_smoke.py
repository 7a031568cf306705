"""The benchmark's code path runs against the real stack and ends with its JSON line.

This checks that the benchmark works and reports sane numbers, not how fast it is: speed
targets are figures printed by `medic bench latency`, not assertions.
"""

from __future__ import annotations

import pytest

from tests.e2e.helpers import run_bench

pytestmark = pytest.mark.e2e


def test_bench_latency_prints_a_json_last_line(stack) -> None:
    result = run_bench(stack, "latency", "--failures", "2")
    assert result["benchmark"] == "latency" and result["failures"] == 2
    assert 0 < result["p50_s"] <= result["p95_s"] <= result["max_s"]
