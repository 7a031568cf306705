"""Run a generation request in another interpreter (the generation environment) over stdin/stdout.

medic_diagnose does this through ``@task.external_python``; the CLI (``medic eval``,
``medic bench llm``) and the tests use this, with the same worker on the other side.
"""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping


class IsolatedRunError(RuntimeError):
    pass


def run_isolated(python: str, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    try:
        done = subprocess.run(
            [python, "-m", "medic.llm.worker"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise IsolatedRunError(f"no generation interpreter at {python}") from exc
    except subprocess.TimeoutExpired as exc:
        raise IsolatedRunError(f"the generation worker did not answer within {timeout:.0f}s") from exc
    if done.returncode != 0:
        raise IsolatedRunError(f"the generation worker exited {done.returncode}: {done.stderr[-2000:]}")
    try:
        answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return answer
    except (IndexError, json.JSONDecodeError) as exc:
        raise IsolatedRunError(f"the generation worker printed no JSON: {done.stdout[-500:]}") from exc
