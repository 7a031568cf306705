"""The Airflow side of generation: settings from ``[medic]``, and validation of what came back.

Model output is data, never instructions: it is parsed as JSON, validated against the
Diagnosis contract (allow-listed classes and actions, bounded texts, per-action params),
then checked against what the model was shown: quoted evidence must appear verbatim in the
failure, and similar incidents must be ones it was offered. Output that fails any of this is
not repaired into a guess: the incident escalates with the reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from medic import config
from medic.contract import Diagnosis, contract_text
from medic.llm import prompt as prompts
from medic.llm.base import BACKENDS, GenerationSettings

if TYPE_CHECKING:
    import psycopg

    from medic.diagnose.knowledge import Match
    from medic.diagnose.memory import Prepared

_SPACE = re.compile(r"\s+")


def backend_name() -> str:
    name = config.get("llm_backend").strip().lower() or "none"
    if name not in BACKENDS:
        raise ValueError(f"[medic] llm_backend must be one of {BACKENDS}, not {name!r}")
    return name


def settings_from_config(*, with_secret: bool = False) -> GenerationSettings:
    """The generation settings; the openai endpoint and key come from the ``llm_conn_id`` Connection."""
    backend = backend_name()
    base_url, api_key = "", ""
    if backend == "openai":
        # Airflow loads only here: `medic eval` imports this module before it points Airflow at a home
        from airflow.sdk import BaseHook  # noqa: PLC0415

        conn = BaseHook.get_connection(config.get("llm_conn_id"))
        base_url = conn.host or ""
        if base_url and not base_url.startswith(("http://", "https://")):
            base_url = f"{conn.schema or 'http'}://{base_url}" + (f":{conn.port}" if conn.port else "")
        api_key = (conn.password or "") if with_secret else ""
    return GenerationSettings(
        backend=backend,
        model=config.get("llm_model"),
        max_new_tokens=config.get_int("llm_max_new_tokens"),
        temperature=config.get_float("llm_temperature"),
        timeout_seconds=config.get_float("llm_timeout_seconds"),
        cache_dir=config.get("llm_cache_dir"),
        threads=config.get_int("llm_threads"),
        base_url=base_url,
        api_key=api_key,
    )


_BUDGET_LOCK = "medic-generation-budget"


def reserve_generations(
    conn: psycopg.Connection, incident_ids: list[int], per_hour: int
) -> tuple[list[int], list[int]]:
    """Split ``incident_ids`` into those the model may see now and those over the hourly cap.

    The budget is a rolling hour of reservations in ``medic.generation_budget``, taken under
    one advisory lock; an incident reserved before (a retried task) keeps its reservation.
    ``per_hour`` 0 or less: no cap. ``conn`` must not be in a transaction of its own.
    """
    if not incident_ids:
        return [], []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_BUDGET_LOCK,))
        already = {
            row[0]
            for row in conn.execute(
                "SELECT incident_id FROM medic.generation_budget WHERE incident_id = ANY(%s)", (incident_ids,)
            ).fetchall()
        }
        fresh = [i for i in incident_ids if i not in already]
        if per_hour > 0:
            row = conn.execute(
                "SELECT count(*) FROM medic.generation_budget WHERE reserved_at > now() - interval '1 hour'"
            ).fetchone()
            room = max(0, per_hour - int(row[0] if row else 0))
        else:
            room = len(fresh)
        granted, over = fresh[:room], fresh[room:]
        if granted:
            conn.execute("INSERT INTO medic.generation_budget (incident_id) SELECT unnest(%s::bigint[])", (granted,))
    allowed = set(already) | set(granted)
    return [i for i in incident_ids if i in allowed], over


def neighbours(matches: Iterable[Match]) -> list[dict[str, Any]]:
    """Retrieved entries as stored with a diagnosis and shown in the prompt."""
    return [m.neighbour() for m in matches]


def prompt_prefix(runbooks: Iterable[Any]) -> str:
    """The fixed part of every prompt: the same for every incident while the runbooks are."""
    return prompts.prompt_prefix(runbooks, Diagnosis.model_json_schema())


def prompt_version(runbooks: Iterable[Any]) -> str:
    """A short digest of the fixed prompt: it changes when instructions, schema or runbooks do."""
    return "sha256:" + hashlib.sha256(prompt_prefix(runbooks).encode()).hexdigest()[:16]


def incident_prompt(
    prefix: str,
    prepared: Prepared,
    *,
    dag_id: str,
    task_id: str,
    operator: str | None,
    similar: Iterable[Mapping[str, Any]],
    retrieval: Diagnosis | None,
) -> str:
    """The whole prompt for one prepared failure; evidence shown as the contract can quote it."""
    evidence = prepared.evidence
    failure = prompts.failure_section(
        dag_id=dag_id,
        task_id=task_id,
        operator=operator,
        exception=contract_text(f"{evidence.exception_type or 'Error'}: {evidence.message}", 128),
        evidence_lines=[contract_text(line, 128) for line in evidence.lines],
        frames=evidence.frames,
        similar=list(similar),
        retrieval=retrieval.model_dump(mode="json") if retrieval else None,
    )
    return prompts.build_prompt(prefix, failure)


@dataclass
class Checked:
    diagnosis: Diagnosis | None
    problem: str | None = None  # why the output was refused (then the incident escalates)
    notes: list[str] = field(default_factory=list)  # what was dropped from an accepted output


def _normal(text: str) -> str:
    """Compare quotes as the contract writes them (the prompt shows evidence in that form too)."""
    return _SPACE.sub(" ", contract_text(text, len(text))).strip().lower()


#: Output longer than this is refused before parsing: the contract's bounded texts fit in far less.
MAX_OUTPUT_CHARS = 16_000
#: Deeper nesting is refused before parsing; the contract is two levels deep.
MAX_OUTPUT_DEPTH = 8


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys repeat is ambiguous: which value would the model have meant?"""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _nesting_depth(text: str) -> int:
    """The deepest bracket nesting outside strings, counted without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _read_json_object(text: object) -> tuple[dict[str, Any] | None, str | None]:
    """(the output as a JSON object, None) or (None, why it is not one); bounded before parsing."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None, "the model returned nothing"
    if not isinstance(text, str):
        return None, f"the model's output is not text ({type(text).__name__})"
    if len(text) > MAX_OUTPUT_CHARS:
        return None, f"the model's output is {len(text)} characters, over {MAX_OUTPUT_CHARS}"
    depth = _nesting_depth(text)
    if depth > MAX_OUTPUT_DEPTH:
        return None, f"the model's output nests {depth} levels deep, over {MAX_OUTPUT_DEPTH}"
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as exc:
        return None, f"the model's output repeats the key {contract_text(str(exc), 40)!r}"
    except json.JSONDecodeError as exc:
        return None, f"the model's output is not JSON ({exc.msg} at {exc.pos})"
    except (ValueError, RecursionError) as exc:
        return None, f"the model's output cannot be read as JSON ({type(exc).__name__})"
    if not isinstance(data, dict):
        return None, f"the model's output breaks the contract: a JSON {type(data).__name__}, not an object"
    return data, None


def check_output(text: object, *, failure_text: str, offered_keys: Iterable[str]) -> Checked:
    """Model output of any shape, checked; refused with the reason unless it is one valid Diagnosis."""
    data, problem = _read_json_object(text)
    if data is None:
        return Checked(None, problem)
    try:
        diagnosis = Diagnosis.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "output"
        return Checked(None, f"the model's output breaks the contract at {where}: {first['msg']}"[:300])
    notes = []
    haystack = _normal(failure_text)
    quoted = [line for line in diagnosis.evidence if line.strip() and _normal(line) in haystack]
    if len(quoted) != len(diagnosis.evidence):
        notes.append(f"dropped {len(diagnosis.evidence) - len(quoted)} evidence line(s) not found in the failure")
    offered = set(offered_keys)
    similar = [key for key in diagnosis.similar_incidents if key in offered]
    if len(similar) != len(diagnosis.similar_incidents):
        notes.append(f"dropped {len(diagnosis.similar_incidents) - len(similar)} similar incident(s) never offered")
    diagnosis = diagnosis.model_copy(update={"evidence": quoted, "similar_incidents": similar})
    return Checked(diagnosis, None, notes)


def results_by_incident(generated: object) -> dict[Any, Mapping[str, Any]]:
    """The generation step's per-incident results, whatever shape came back: entries that are
    not objects with an incident id are dropped (their incidents then escalate as unanswered)."""
    if not isinstance(generated, Mapping):
        return {}
    results = generated.get("results")
    if not isinstance(results, list):
        return {}
    return {r["incident_id"]: r for r in results if isinstance(r, Mapping) and "incident_id" in r}


def model_diagnosis(
    retrieval: Diagnosis, result: Mapping[str, Any] | None, failure_text: str, offered_keys: Iterable[str]
) -> tuple[Diagnosis, str | None, list[str]]:
    """The model's validated diagnosis, or an escalation that says why there is none.

    Returns (diagnosis, problem, notes): ``problem`` is None when the model's output stands.
    """
    if result is None:
        problem = "generation returned nothing for this incident (the generation task failed or timed out)"
    else:
        checked = check_output(result.get("text"), failure_text=failure_text, offered_keys=offered_keys)
        if checked.diagnosis is not None:
            return checked.diagnosis, None, checked.notes
        error = result.get("error")
        problem = "; ".join(
            p for p in (contract_text(error, 300) if isinstance(error, str) else None, checked.problem) if p
        )
    return escalation(retrieval, problem), problem, []


def escalation(retrieval: Diagnosis, problem: str) -> Diagnosis:
    """The diagnosis that stands when the model's does not: the evidence's class, escalated, and why."""
    return Diagnosis(
        error_class=retrieval.error_class,
        transience="unknown",
        root_cause=retrieval.root_cause,
        evidence=retrieval.evidence,
        action="escalate",
        confidence=0.0,
        explanation=contract_text(f"Generation failed, a person decides: {problem}", 128),
    )
