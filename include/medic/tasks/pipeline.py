"""The steps of ``medic_diagnose`` as plain functions; the DAG file only wires them.

A run treats its asset event(s) as a wake-up: it claims every pending failure event, not
only the ones its events named, because bursts coalesce into one run upstream and would
otherwise strand events until another failure arrives.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from medic import config, db
from medic.airflow_api import AirflowApi
from medic.capture import outbox
from medic.capture.records import FailureRecord
from medic.contract import Diagnosis
from medic.diagnose import generation, incidents, memory
from medic.diagnose.diagnosis import Opinions, assess, diagnose
from medic.diagnose.embedding import get_embedder
from medic.diagnose.knowledge import Match, Runbook, load_runbooks
from medic.lineage import events as lineage
from medic.llm import worker
from medic.policy.gate import Evidence, Guards, Thresholds, Verdict, decide
from medic.remediate import remediation
from medic.verify import verification

if TYPE_CHECKING:
    import uuid

    import psycopg

log = logging.getLogger(__name__)


class _AlreadyDecided(Exception):
    """Another diagnose run decided this incident first; this run's rows for it roll back."""


def wakeup_summary(triggering_asset_events: object) -> dict[str, Any]:
    """How many wake-ups (asset events) and announced event ids started this run; for the log."""
    wakeups, announced = 0, set[int]()
    try:
        if not isinstance(triggering_asset_events, Mapping):
            raise TypeError(f"a {type(triggering_asset_events).__name__}, not a mapping")
        for events in triggering_asset_events.values():
            for event in events:
                wakeups += 1
                payload = (getattr(event, "extra", None) or {}).get("payload") or {}
                announced.update(int(i) for i in payload.get("event_ids", []) if str(i).isdigit())
    except Exception as exc:  # malformed events must not stop the run: we claim from the table
        log.warning("medic: could not read the triggering asset events (%s); claiming anyway", exc)
    return {"wakeups": wakeups, "announced": len(announced)}


def claim_failure_events(owner: str) -> list[int]:
    settings = config.OutboxSettings.load()
    with db.connect(settings.conn_id, application_name="medic-diagnose") as conn:
        event_ids = outbox.claim_pending(
            conn,
            owner=owner,
            lease_seconds=settings.claim_lease_seconds,
            max_attempts=settings.max_claim_attempts,
        )
    log.info("medic: claimed %d pending failure event(s)", len(event_ids))
    return event_ids


def file_incidents(event_ids: list[int], owner: str) -> dict[str, Any]:
    if not event_ids:
        return asdict(incidents.FilingResult([], [], [], [], []))
    with db.connect(config.get("conn_id"), application_name="medic-diagnose", autocommit=True) as conn:
        result = incidents.file_claimed_events(conn, event_ids, owner)
    log.info(
        "medic: filed %d event(s) into %d incident(s) (%d new); %d invalid, %d taken over by another run",
        len(result.processed_events),
        len(result.incident_ids),
        len(result.new_incidents),
        len(result.invalid_events),
        len(result.lost_events),
    )
    return asdict(result)


def _diagnose_batch(
    conn: psycopg.Connection, prepared: list[memory.Prepared], runbooks: list[Runbook]
) -> tuple[str, list[tuple[Opinions, Diagnosis, list[Match]]]]:
    """The evidence-only diagnosis of each prepared failure, and the embedding model used.

    A recurrence of a failure medic fixed and verified before is diagnosed on that record alone:
    no embedding model to load (the slow part on a CPU worker), the same policy afterwards.
    """
    recurrences = [verification.verified_recurrences(conn, item.fingerprint) for item in prepared]
    if prepared and all(any(m.outcome == "resolved" for m in found) for found in recurrences):
        results = []
        for item, found in zip(prepared, recurrences, strict=True):
            opinions = assess(item.text, found, runbooks)
            results.append((opinions, diagnose(item.evidence, opinions, found, runbooks), found))
        return "none: recurrence of a verified fix (same fingerprint)", results
    embedder = get_embedder()
    memory.ensure_runbooks(conn, embedder, runbooks)
    verification.learn_verified(conn, embedder)  # verified outcomes count before they are needed
    return embedder.model_id, memory.diagnose_prepared(conn, embedder, runbooks, prepared)


_INSERT_RETRIEVAL_DIAGNOSIS = """
INSERT INTO medic.diagnoses (incident_id, source, embedding_model, error_class, action, confidence, diagnosis,
                             neighbours, opinions)
VALUES (%s, 'retrieval', %s, %s, %s, %s, %s, %s, %s)
"""


def diagnose_incidents(filing: dict[str, Any]) -> dict[str, Any]:
    """Diagnose the incidents this run opened, once each, from failure memory; build the prompts.

    Incidents that only gained another event keep their diagnosis. The retrieval diagnosis is
    stored in the same transaction that moves its incident from open to diagnosed, so a
    retried task never diagnoses an incident twice. With a generation backend configured,
    the result also carries one prompt per incident for the generation step.
    """
    backend = generation.backend_name()
    settings = generation.settings_from_config() if backend != "none" else None
    incident_ids = list(filing.get("new_incidents") or [])
    out: dict[str, Any] = {"backend": backend, "incidents": [], "diagnosed": [], "request": None, "over_budget": []}
    if not incident_ids:
        return out
    runbooks = load_runbooks()
    prefix = generation.prompt_prefix(runbooks)
    requests: list[dict[str, Any]] = []
    with db.connect(config.get("conn_id"), application_name="medic-diagnose", autocommit=True) as conn:
        rows = conn.execute(
            "SELECT i.id, e.payload FROM medic.incidents i JOIN medic.failure_events e ON e.id = i.first_event_id"
            " WHERE i.id = ANY(%s) AND i.status = 'open' ORDER BY i.id",
            (incident_ids,),
        ).fetchall()
        records = [(incident_id, FailureRecord.model_validate(payload)) for incident_id, payload in rows]
        prepared = [memory.prepare_record(r) for _, r in records]
        embedding_model, results = _diagnose_batch(conn, prepared, runbooks)
        for (incident_id, record), item, (opinions, d, matches) in zip(records, prepared, results, strict=True):
            similar = generation.neighbours(matches)
            with conn.transaction():
                moved = conn.execute(
                    "UPDATE medic.incidents SET status = 'diagnosed', updated_at = now()"
                    " WHERE id = %s AND status = 'open' RETURNING id",
                    (incident_id,),
                ).fetchone()
                if moved is None:
                    continue  # someone else got there first
                conn.execute(
                    _INSERT_RETRIEVAL_DIAGNOSIS,
                    (
                        incident_id,
                        embedding_model,
                        d.error_class,
                        d.action,
                        d.confidence,
                        Jsonb(d.model_dump(mode="json")),
                        Jsonb(similar),
                        Jsonb(opinions.to_json()),
                    ),
                )
            out["incidents"].append(incident_id)
            out["diagnosed"].append(
                {"incident_id": incident_id, "class": d.error_class, "action": d.action, "confidence": d.confidence}
            )
            log.info(
                "medic: incident %s: retrieval says %s -> %s (confidence %.2f)",
                incident_id,
                d.error_class,
                d.action,
                d.confidence,
            )
            if settings is not None:
                prompt = generation.incident_prompt(
                    prefix,
                    item,
                    dag_id=record.dag_id,
                    task_id=record.task_id,
                    operator=record.operator,
                    similar=similar,
                    retrieval=d,
                )
                requests.append({"incident_id": incident_id, "prompt": prompt})
    if settings is not None:
        out["over_budget"], granted = _reserve_generation_budget([r["incident_id"] for r in requests])
        prompts = [r for r in requests if r["incident_id"] in granted]
        if prompts:
            out["request"] = {"settings": asdict(settings), "schema": Diagnosis.model_json_schema(), "prompts": prompts}
    return out


def _reserve_generation_budget(ids: list[int]) -> tuple[list[int], set[int]]:
    """(over budget, granted): a budget that cannot be read grants nothing, never strands anything."""
    cap = config.get_int("max_generations_per_hour")
    try:
        with db.connect(config.get("conn_id"), application_name="medic-diagnose", autocommit=True) as conn:
            allowed, over = generation.reserve_generations(conn, ids, cap)
    except Exception as exc:  # the incidents are diagnosed already: never strand them undecided
        log.error("medic: generation budget unavailable (%s: %s): deciding from retrieval", type(exc).__name__, exc)
        allowed, over = [], ids
    if over:
        log.warning(
            "medic: generation budget of %d per hour spent: %d incident(s) decided from retrieval alone: %s",
            cap,
            len(over),
            over,
        )
    return over, set(allowed)


def generate_in_process(diagnosed: dict[str, Any]) -> dict[str, Any] | None:
    """Generation for backends that need no isolated environment (openai: plain HTTP).

    The API key is read from the Connection here, inside the task, so it never travels in XCom.
    """
    request = diagnosed.get("request")
    if not request:
        return None
    settings = generation.settings_from_config(with_secret=True)
    return worker.run({**request, "settings": asdict(settings)})


# ---- decide: load, merge the model's output, decide under the task's lock, persist, emit ----------


@dataclass(frozen=True)
class Pending:
    """An incident diagnosed from evidence and not yet decided, as the decision step reads it."""

    incident_id: int
    dag_id: str
    task_id: str
    fingerprint: str
    record: FailureRecord
    retrieval_id: int
    retrieval: Diagnosis
    neighbours: list[dict[str, Any]]
    opinions: Opinions
    lineage_key: uuid.UUID | str
    event_count: int
    embedding_model: str | None

    @property
    def matches(self) -> list[Match]:
        return [Match.from_neighbour(n) for n in self.neighbours]


@dataclass(frozen=True)
class Generated:
    """What the generation step returned for one incident, merged with its evidence."""

    evidence: Evidence
    ran: bool  # the model was asked (a backend is set and the incident was within the budget)
    info: dict[str, Any] | None  # what is stored with the model's diagnosis


_LOAD_PENDING = """
SELECT i.id, i.dag_id, i.task_id, i.fingerprint, e.payload, d.id, d.diagnosis, d.neighbours, d.opinions,
       i.lineage_key, i.event_count, d.embedding_model
  FROM medic.incidents i JOIN medic.failure_events e ON e.id = i.first_event_id
  JOIN LATERAL (SELECT * FROM medic.diagnoses WHERE incident_id = i.id AND source = 'retrieval'
                 ORDER BY id DESC LIMIT 1) d ON true
 WHERE i.id = ANY(%s) AND i.route IS NULL ORDER BY i.id
"""


def _load_pending(conn: psycopg.Connection, incident_ids: list[int], runbooks: list[Runbook]) -> list[Pending]:
    pending = []
    for row in conn.execute(_LOAD_PENDING, (incident_ids,)).fetchall():
        record = FailureRecord.model_validate(row[4])
        neighbours = list(row[7] or [])
        opinions = (
            Opinions.from_json(row[8])
            if row[8] is not None  # diagnosed before opinions were stored: assessed again, the same way
            else assess(memory.prepare_record(record).text, [Match.from_neighbour(n) for n in neighbours], runbooks)
        )
        pending.append(
            Pending(
                incident_id=row[0],
                dag_id=row[1],
                task_id=row[2],
                fingerprint=row[3],
                record=record,
                retrieval_id=row[5],
                retrieval=Diagnosis.model_validate(row[6]),
                neighbours=neighbours,
                opinions=opinions,
                lineage_key=row[9],
                event_count=row[10],
                embedding_model=row[11],
            )
        )
    return pending


def _merge_model_output(
    item: Pending, backend: str, over_budget: bool, generated: Mapping[str, Any], result: Mapping[str, Any] | None
) -> Generated:
    """The evidence the policy weighs: with a model, its validated diagnosis or the refusal."""
    matches = item.matches
    if backend == "none" or over_budget:
        return Generated(Evidence(item.retrieval, item.opinions, matches), False, None)
    model, problem, notes = generation.model_diagnosis(
        item.retrieval, result, memory.prepare_record(item.record).text, [m.source_key for m in matches]
    )
    environment = generated.get("environment")
    env: Mapping[str, Any] = environment if isinstance(environment, Mapping) else {}
    raw = (result or {}).get("text")
    info = {
        "backend": backend,
        "model": generated.get("model"),
        "python": env.get("python"),
        "prefix": env.get("prefix"),
        "airflow_importable": env.get("airflow_importable"),
        "batch_seconds": generated.get("seconds"),
        "batch_size": len(generation.results_by_incident(generated)),
        "tokens": (result or {}).get("tokens"),
        "refused": problem,
        "notes": notes,
        "raw": raw[:4000] if isinstance(raw, str) else None,
    }
    return Generated(Evidence(item.retrieval, item.opinions, matches, model, problem), True, info)


_GUARD_FACTS = """
SELECT (SELECT count(*) FROM medic.incidents
         WHERE dag_id = %(dag)s AND task_id = %(task)s AND route = 'auto'
           AND decided_at > now() - make_interval(mins => %(window)s))
     + (SELECT count(*) FROM medic.remediations r JOIN medic.incidents i ON i.id = r.incident_id
         WHERE i.dag_id = %(dag)s AND i.task_id = %(task)s AND r.decided_by = 'user' AND r.status = 'applied'
           AND r.applied_at > now() - make_interval(mins => %(window)s)),
       (SELECT 'incident ' || i.id || ': ' || r.action || ' by ' || r.decided_by || ' failed at ' || r.verified_at
          FROM medic.remediations r JOIN medic.incidents i ON i.id = r.incident_id
         WHERE i.dag_id = %(dag)s AND i.task_id = %(task)s AND i.fingerprint = %(fingerprint)s
           AND r.verified_outcome = 'failed'
           AND r.verified_at > now() - make_interval(mins => %(window)s)
         ORDER BY r.verified_at DESC LIMIT 1)
"""

_INSERT_MODEL_DIAGNOSIS = """
INSERT INTO medic.diagnoses (incident_id, source, error_class, action, confidence, automatic, decision_reason,
                             route, diagnosis, neighbours, opinions, generation)
VALUES (%(incident_id)s, %(source)s, %(error_class)s, %(action)s, %(confidence)s, %(automatic)s, %(reason)s,
        %(route)s, %(diagnosis)s, %(neighbours)s, %(opinions)s, %(generation)s)
RETURNING id
"""

_RECORD_ON_DIAGNOSIS = """
UPDATE medic.diagnoses SET automatic = %(automatic)s, decision_reason = %(reason)s, route = %(route)s
 WHERE id = %(diagnosis_id)s
"""

_RECORD_DECISION = """
UPDATE medic.incidents
   SET route = %(route)s, route_reason = %(reason)s, diagnosis_id = %(diagnosis_id)s, decided_at = now(),
       status = CASE %(route)s WHEN 'escalate' THEN 'escalated' WHEN 'approval' THEN 'awaiting_approval'
                ELSE status END,
       updated_at = now()
 WHERE id = %(incident_id)s AND route IS NULL
RETURNING id
"""


def _decide_and_persist(
    conn: psycopg.Connection,
    item: Pending,
    merged: Generated,
    runbooks: list[Runbook],
    thresholds: Thresholds,
    *,
    backend: str,
    over_budget: bool,
) -> tuple[Verdict, str] | None:
    """The policy's one decision for an incident, taken and recorded under the task's advisory
    lock (so concurrent runs cannot both pass the loop guard); None if another run decided it."""
    window = config.get_int("loop_guard_window_minutes")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"medic-guard:{item.dag_id}.{item.task_id}",))
        facts = conn.execute(
            _GUARD_FACTS,
            {"dag": item.dag_id, "task": item.task_id, "window": window, "fingerprint": item.fingerprint},
        ).fetchone()
        recent, failed_fix = facts if facts else (0, None)
        guards = Guards.for_task(
            item.record.dag_tags, int(recent or 0), failed_fix, found_by_sweep=item.record.source == "sweep"
        )
        verdict = decide(merged.evidence, runbooks, thresholds, guards)
        reason = verdict.reason
        if over_budget:
            reason += (
                f" (generation budget of {config.get_int('max_generations_per_hour')} per hour spent:"
                " decided from retrieval)"
            )
        decision = {"automatic": verdict.automatic, "reason": reason, "route": verdict.route}
        diagnosis_id: int | None = item.retrieval_id
        if merged.ran:
            inserted = conn.execute(
                _INSERT_MODEL_DIAGNOSIS,
                {
                    **decision,
                    "incident_id": item.incident_id,
                    "source": f"llm:{backend}",
                    "error_class": verdict.diagnosis.error_class,
                    "action": verdict.diagnosis.action,
                    "confidence": verdict.diagnosis.confidence,
                    "diagnosis": Jsonb(verdict.diagnosis.model_dump(mode="json")),
                    "neighbours": Jsonb(item.neighbours),
                    "opinions": Jsonb(item.opinions.to_json()),
                    "generation": Jsonb(merged.info),
                },
            ).fetchone()
            diagnosis_id = inserted[0] if inserted else None
        else:
            conn.execute(_RECORD_ON_DIAGNOSIS, {**decision, "diagnosis_id": diagnosis_id})
        moved = conn.execute(
            _RECORD_DECISION, {**decision, "diagnosis_id": diagnosis_id, "incident_id": item.incident_id}
        ).fetchone()
        if moved is None:
            raise _AlreadyDecided
    return verdict, reason


def _plan_and_emit(
    conn: psycopg.Connection,
    item: Pending,
    verdict: Verdict,
    reason: str,
    *,
    source: str,
    model: str | None,
    prompt_version: str | None,
) -> remediation.Plan | None:
    """The remediation plan a non-escalated decision leads to, and the diagnosis's lineage."""
    subject = _lineage_subject(item.record, item.incident_id, item.lineage_key, conn)
    plan = None
    if verdict.route != "escalate":
        targets = remediation.load_targets(conn, item.incident_id)
        plan = remediation.build_plan(
            item.incident_id,
            item.dag_id,
            item.task_id,
            verdict.route,
            reason,
            verdict.diagnosis,
            targets,
            item.neighbours,
        )
        plan.lineage = subject
    if subject:
        lineage.emit_built(
            f"the diagnosis of incident {item.incident_id}",
            lineage.diagnosis_event,
            subj=subject,
            record=item.record,
            incident={"id": item.incident_id, "fingerprint": item.fingerprint, "event_count": item.event_count},
            diagnosis=verdict.diagnosis,
            route=verdict.route,
            reason=reason,
            source=source,
            embedding_model=item.embedding_model,
            model=model,
            prompt_version=prompt_version,
            neighbours=item.neighbours,
            delay_seconds=plan.delay_seconds if plan else 0,
        )
    return plan


def decide_incidents(diagnosed: dict[str, Any] | None, generated: dict[str, Any] | None) -> dict[str, Any]:
    """Validate the generated diagnoses, apply the policy, record one decision per incident.

    With no backend the retrieval diagnosis is the diagnosis. With one, every incident gets the
    model's validated diagnosis, or, when the output is missing or invalid or the backend was
    down, an escalation that says why; never a default action. An incident over the generation
    budget is decided from its retrieval diagnosis, as with no backend, and its reason says so.
    Anything that goes wrong with one incident escalates that incident alone, with the reason.
    """
    diagnosed = diagnosed or {}
    incident_ids = list(diagnosed.get("incidents") or [])
    if not incident_ids:
        return {"decided": [], "auto": [], "approvals": []}
    backend = str(diagnosed.get("backend", "none"))
    over_budget_ids = set(diagnosed.get("over_budget") or [])
    generated_map: Mapping[str, Any] = generated if isinstance(generated, Mapping) else {}
    results = generation.results_by_incident(generated_map)
    runbooks = load_runbooks()
    thresholds = Thresholds.from_config()
    prompt_version = generation.prompt_version(runbooks) if backend != "none" else None
    decided: list[dict[str, Any]] = []
    plans: list[remediation.Plan] = []
    approvals: list[remediation.Plan] = []
    with db.connect(config.get("conn_id"), application_name="medic-diagnose", autocommit=True) as conn:
        for item in _load_pending(conn, incident_ids, runbooks):
            over_budget = item.incident_id in over_budget_ids
            try:
                merged = _merge_model_output(item, backend, over_budget, generated_map, results.get(item.incident_id))
            except Exception as exc:  # output of any shape: this incident escalates, the batch goes on
                problem = f"the model's output could not be read ({type(exc).__name__})"
                log.warning("medic: incident %s: %s: %s", item.incident_id, problem, exc)
                escalation = generation.escalation(item.retrieval, problem)
                merged = Generated(
                    Evidence(item.retrieval, item.opinions, item.matches, escalation, problem),
                    True,
                    {
                        "backend": backend,
                        "refused": problem,
                    },
                )
            try:
                decision = _decide_and_persist(
                    conn, item, merged, runbooks, thresholds, backend=backend, over_budget=over_budget
                )
            except _AlreadyDecided:
                continue  # another run decided it; this run's rows for it rolled back
            if decision is None:
                continue
            verdict, reason = decision
            source = f"llm:{backend}" if merged.ran else "retrieval"
            model_name = generated_map.get("model") if merged.ran else None
            model = str(model_name) if model_name is not None else None
            plan = _plan_and_emit(
                conn, item, verdict, reason, source=source, model=model, prompt_version=prompt_version
            )
            if plan is not None:
                (plans if verdict.route == "auto" else approvals).append(plan)
            d = verdict.diagnosis
            decided.append(
                {
                    "incident_id": item.incident_id,
                    "class": d.error_class,
                    "action": d.action,
                    "confidence": d.confidence,
                    "route": verdict.route,
                    "reason": reason,
                }
            )
            log.info(
                "medic: incident %s decided: %s -> %s, %s (confidence %.2f): %s",
                item.incident_id,
                d.error_class,
                d.action,
                verdict.route,
                d.confidence,
                reason,
            )
    return {"decided": decided, "auto": [asdict(p) for p in plans], "approvals": [asdict(p) for p in approvals]}


def _lineage_subject(
    record: FailureRecord, incident_id: int, lineage_key: uuid.UUID | str, conn: psycopg.Connection
) -> lineage.Subject:
    """The incident's OpenLineage subject; empty (and said why) when it cannot be had."""
    if not lineage.enabled():
        return {}
    try:
        return lineage.subject(record, incident_id, lineage_key, conn)
    except Exception as exc:
        log.warning("medic: no lineage for incident %s (%s: %s)", incident_id, type(exc).__name__, exc)
        return {}


def prepare_approvals(plans: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Dry-run each approval's fix through the REST API and write its Markdown body.

    An API that cannot be reached does not hold back the approval: the body says so.
    """
    approvals = [remediation.Plan.from_dict(p) for p in plans or []]
    if not approvals:
        return []
    api = None
    try:
        api = AirflowApi.from_connection(config.get("api_conn_id"))
    except Exception as exc:
        log.warning("medic: no dry run for approvals: %s: %s", type(exc).__name__, exc)
    for plan in approvals:
        if api is not None:
            try:
                plan.preview = remediation.preview(api, plan)
            except Exception as exc:
                log.warning("medic: dry run for incident %s failed: %s: %s", plan.incident_id, type(exc).__name__, exc)
                plan.reason += f" (dry run unavailable: {type(exc).__name__})"
        plan.body = remediation.approval_body(plan)
    return [asdict(p) for p in approvals]


def refresh_knowledge() -> dict[str, Any]:
    """Embed and upsert the runbooks for the configured model; prune stale and other-model rows."""
    embedder = get_embedder()
    with db.connect(config.get("conn_id"), application_name="medic-knowledge", autocommit=True) as conn:
        counts = memory.refresh_runbooks(conn, embedder, load_runbooks())
        counts["learned"] = verification.learn_verified(conn, embedder)
    return {"model": embedder.model_id, "revision": embedder.revision, **counts}
