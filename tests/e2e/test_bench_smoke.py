"""The benchmark's code path runs against the real stack and ends with its JSON line.

This checks that the benchmark works and reports sane numbers, not how fast it is: speed
targets are figures printed by `medic bench latency`, not assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_bench_latency_prints_a_json_last_line(stack) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "medic.cli",
            "--home",
            str(stack.home),
            "--port",
            str(stack.api_port),
            "bench",
            "latency",
            "--failures",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **stack.env()},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "latency" and result["failures"] == 2
    assert 0 < result["p50_s"] <= result["p95_s"] <= result["max_s"]
