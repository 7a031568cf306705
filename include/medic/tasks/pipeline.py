"""The steps of ``medic_diagnose`` as plain functions; the DAG file only wires them.

A run treats its asset event(s) as a wake-up: it claims every pending failure event, not
only the ones its events named, because bursts coalesce into one run upstream and would
otherwise strand events until another failure arrives.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from psycopg.types.json import Jsonb

from medic import config, db
from medic.capture import outbox
from medic.diagnose import incidents

log = logging.getLogger(__name__)


class _AlreadyDecided(Exception):
    """Another diagnose run decided this incident first; this run's rows for it roll back."""


def wakeup_summary(triggering_asset_events: Any) -> dict[str, Any]:
    """How many wake-ups (asset events) and announced event ids started this run; for the log."""
    wakeups, announced = 0, set()
    try:
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


def diagnose_incidents(filing: dict[str, Any]) -> dict[str, Any]:
    """Diagnose the incidents this run opened, once each, from failure memory; build the prompts.

    Incidents that only gained another event keep their diagnosis. The retrieval diagnosis is
    stored in the same transaction that moves its incident from open to diagnosed, so a
    retried task never diagnoses an incident twice. With a generation backend configured,
    the result also carries one prompt per incident for the generation step.
    """
    from medic.capture.records import FailureRecord
    from medic.diagnose import generation, memory
    from medic.diagnose.diagnosis import Diagnosis, diagnose_from_retrieval
    from medic.diagnose.embedding import get_embedder
    from medic.diagnose.knowledge import load_runbooks
    from medic.verify import verification

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
        # A recurrence of a failure medic fixed and verified before is decided on that record alone:
        # no embedding model to load (the slow part on a CPU worker), the same gates and guards.
        recurrences = [verification.verified_recurrences(conn, item.fingerprint) for item in prepared]
        if prepared and all(any(m.outcome == "resolved" for m in found) for found in recurrences):
            embedding_model = "none: recurrence of a verified fix (same fingerprint)"
            results = [
                (diagnose_from_retrieval(item.evidence, item.text, found, runbooks), found)
                for item, found in zip(prepared, recurrences, strict=True)
            ]
        else:
            embedder = get_embedder()
            embedding_model = embedder.model_id
            memory.ensure_runbooks(conn, embedder, runbooks)
            verification.learn_verified(conn, embedder)  # verified outcomes count before they are needed
            results = memory.diagnose_prepared(conn, embedder, runbooks, prepared)
        for (incident_id, record), item, (decision, matches) in zip(records, prepared, results, strict=True):
            d = decision.diagnosis
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
                    "INSERT INTO medic.diagnoses (incident_id, source, embedding_model, error_class, action,"
                    " confidence, automatic, decision_reason, route, diagnosis, neighbours)"
                    " VALUES (%s, 'retrieval', %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        incident_id,
                        embedding_model,
                        d.error_class,
                        d.action,
                        d.confidence,
                        decision.automatic,
                        decision.reason,
                        decision.route,
                        Jsonb(d.model_dump(mode="json")),
                        Jsonb(similar),
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
        cap = config.get_int("max_generations_per_hour")
        ids = [r["incident_id"] for r in requests]
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
        out["over_budget"] = over
        granted = set(allowed)
        prompts = [r for r in requests if r["incident_id"] in granted]
        if prompts:
            out["request"] = {"settings": asdict(settings), "schema": Diagnosis.model_json_schema(), "prompts": prompts}
    return out


def generate_in_process(diagnosed: dict[str, Any]) -> dict[str, Any] | None:
    """Generation for backends that need no isolated environment (openai: plain HTTP).

    The API key is read from the Connection here, inside the task, so it never travels in XCom.
    """
    from medic.diagnose import generation
    from medic.llm import worker

    request = diagnosed.get("request")
    if not request:
        return None
    settings = generation.settings_from_config(with_secret=True)
    return worker.run({**request, "settings": asdict(settings)})


_INSERT_MODEL_DIAGNOSIS = """
INSERT INTO medic.diagnoses (incident_id, source, error_class, action, confidence, automatic, decision_reason,
                             route, diagnosis, neighbours, generation)
VALUES (%(incident_id)s, %(source)s, %(error_class)s, %(action)s, %(confidence)s, %(automatic)s, %(reason)s,
        %(route)s, %(diagnosis)s, %(neighbours)s, %(generation)s)
RETURNING id
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


def decide_incidents(diagnosed: dict[str, Any] | None, generated: dict[str, Any] | None) -> dict[str, Any]:
    """Validate the generated diagnoses, apply the policy, record one decision per incident.

    With no backend the retrieval diagnosis is the diagnosis. With one, every incident gets the
    model's validated diagnosis, or, when the output is missing or invalid or the backend was
    down, an escalation that says why; never a default action. An incident over the generation
    budget is decided from its retrieval diagnosis, as with no backend, and its reason says so.
    A failure only the sweep found is never automatic: a person confirms it. The loop guard's count and the
    decision are taken under a per-task advisory lock, so concurrent runs cannot both pass it.
    """
    from medic.capture.records import FailureRecord
    from medic.diagnose import generation, memory
    from medic.diagnose.diagnosis import Diagnosis
    from medic.diagnose.knowledge import Match, load_runbooks
    from medic.lineage import events as lineage
    from medic.policy import gate as policy
    from medic.remediate import remediation

    diagnosed = diagnosed or {}
    incident_ids = list(diagnosed.get("incidents") or [])
    if not incident_ids:
        return {"decided": [], "auto": [], "approvals": []}
    backend = diagnosed.get("backend", "none")
    over_budget_ids = set(diagnosed.get("over_budget") or [])
    generated = generated or {}
    results = {r["incident_id"]: r for r in generated.get("results", [])}
    env = generated.get("environment") or {}
    books = {b.error_class: b for b in load_runbooks()}
    thresholds = policy.Thresholds.from_config()
    window = config.get_int("loop_guard_window_minutes")
    prompt_version = generation.prompt_version(books.values()) if backend != "none" else None
    decided: list[dict[str, Any]] = []
    plans: list[remediation.Plan] = []
    approvals: list[remediation.Plan] = []
    with db.connect(config.get("conn_id"), application_name="medic-diagnose", autocommit=True) as conn:
        rows = conn.execute(
            "SELECT i.id, i.dag_id, i.task_id, i.fingerprint, e.payload, d.id, d.diagnosis, d.neighbours,"
            " i.lineage_key, i.event_count, d.embedding_model"
            " FROM medic.incidents i JOIN medic.failure_events e ON e.id = i.first_event_id"
            " JOIN LATERAL (SELECT * FROM medic.diagnoses WHERE incident_id = i.id AND source = 'retrieval'"
            "   ORDER BY id DESC LIMIT 1) d ON true"
            " WHERE i.id = ANY(%s) AND i.route IS NULL ORDER BY i.id",
            (incident_ids,),
        ).fetchall()
        for row in rows:
            incident_id, dag_id, task_id, fingerprint, payload, retrieval_id, retrieval_json, neighbours = row[:8]
            lineage_key, event_count, embedding_model = row[8:]
            record = FailureRecord.model_validate(payload)
            matches = [
                Match(
                    0,
                    n["kind"],
                    n["key"],
                    n["class"],
                    n["action"],
                    None,
                    n["outcome"],
                    None,
                    "",
                    n["similarity"],
                    n["via"],
                )
                for n in neighbours
            ]
            diagnosis, problem, notes = Diagnosis.model_validate(retrieval_json), None, []
            result = results.get(incident_id)
            # over the generation budget: decided as with no backend, from retrieval, and said so
            over_budget = incident_id in over_budget_ids
            generated_here = backend != "none" and not over_budget
            if generated_here:
                diagnosis, problem, notes = generation.model_diagnosis(
                    diagnosis, result, memory.prepare_record(record).text, [m.source_key for m in matches]
                )
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"medic-guard:{dag_id}.{task_id}",))
                    recent, failed_fix = conn.execute(
                        _GUARD_FACTS, {"dag": dag_id, "task": task_id, "window": window, "fingerprint": fingerprint}
                    ).fetchone()
                    guards = policy.Guards.for_task(record.dag_tags, recent, failed_fix)
                    verdict = policy.decide(diagnosis, matches, books.get(diagnosis.error_class), thresholds, guards)
                    if record.source == "sweep" and verdict.route == "auto":
                        # no listener saw this failure: it may be a person's "mark failed" the api-server
                        # could not report; a person confirms before anything re-runs
                        verdict = policy.Verdict(
                            "approval", verdict.reason + "; found by the sweep: a person confirms", verdict.support
                        )
                    reason = problem or verdict.reason
                    if over_budget:
                        reason += (
                            f" (generation budget of {config.get_int('max_generations_per_hour')} per hour spent:"
                            " decided from retrieval)"
                        )
                    diagnosis_id = retrieval_id
                    if generated_here:
                        generation_info = {
                            "backend": backend,
                            "model": generated.get("model"),
                            "python": env.get("python"),
                            "prefix": env.get("prefix"),
                            "airflow_importable": env.get("airflow_importable"),
                            "batch_seconds": generated.get("seconds"),
                            "batch_size": len(results),
                            "tokens": (result or {}).get("tokens"),
                            "refused": problem,
                            "notes": notes,
                            "raw": ((result or {}).get("text") or "")[:4000],
                        }
                        diagnosis_id = conn.execute(
                            _INSERT_MODEL_DIAGNOSIS,
                            {
                                "incident_id": incident_id,
                                "source": f"llm:{backend}",
                                "error_class": diagnosis.error_class,
                                "action": diagnosis.action,
                                "confidence": diagnosis.confidence,
                                "automatic": verdict.automatic,
                                "reason": reason,
                                "route": verdict.route,
                                "diagnosis": Jsonb(diagnosis.model_dump(mode="json")),
                                "neighbours": Jsonb(neighbours),
                                "generation": Jsonb(generation_info),
                            },
                        ).fetchone()[0]
                    moved = conn.execute(
                        _RECORD_DECISION,
                        {
                            "route": verdict.route,
                            "reason": reason,
                            "diagnosis_id": diagnosis_id,
                            "incident_id": incident_id,
                        },
                    ).fetchone()
                    if moved is None:
                        raise _AlreadyDecided
            except _AlreadyDecided:
                continue  # another run decided it; this run's rows for it rolled back
            subject = _lineage_subject(record, incident_id, lineage_key, conn)
            plan = None
            if verdict.route != "escalate":
                targets = remediation.load_targets(conn, incident_id)
                plan = remediation.build_plan(
                    incident_id, dag_id, task_id, verdict.route, reason, diagnosis, targets, neighbours
                )
                plan.lineage = subject
                (plans if verdict.route == "auto" else approvals).append(plan)
            if subject:
                lineage.emit_built(
                    f"the diagnosis of incident {incident_id}",
                    lineage.diagnosis_event,
                    subj=subject,
                    record=record,
                    incident={"id": incident_id, "fingerprint": fingerprint, "event_count": event_count},
                    diagnosis=diagnosis,
                    route=verdict.route,
                    reason=reason,
                    source=f"llm:{backend}" if generated_here else "retrieval",
                    embedding_model=embedding_model,
                    model=generated.get("model") if generated_here else None,
                    prompt_version=prompt_version,
                    neighbours=neighbours,
                    delay_seconds=plan.delay_seconds if plan else 0,
                )
            decided.append(
                {
                    "incident_id": incident_id,
                    "class": diagnosis.error_class,
                    "action": diagnosis.action,
                    "confidence": diagnosis.confidence,
                    "route": verdict.route,
                    "reason": reason,
                }
            )
            log.info(
                "medic: incident %s decided: %s -> %s, %s (confidence %.2f): %s",
                incident_id,
                diagnosis.error_class,
                diagnosis.action,
                verdict.route,
                diagnosis.confidence,
                reason,
            )
    return {"decided": decided, "auto": [asdict(p) for p in plans], "approvals": [asdict(p) for p in approvals]}


def _lineage_subject(record: Any, incident_id: int, lineage_key: Any, conn: Any) -> dict[str, Any]:
    """The incident's OpenLineage subject; empty (and said why) when it cannot be had."""
    from medic.lineage import events as lineage

    if not lineage.enabled():
        return {}
    try:
        return lineage.subject(record, incident_id, lineage_key, conn)
    except Exception as exc:
        log.warning("medic: no lineage for incident %s (%s: %s)", incident_id, type(exc).__name__, exc)
        return {}


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


def prepare_approvals(plans: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Dry-run each approval's fix through the REST API and write its Markdown body.

    An API that cannot be reached does not hold back the approval: the body says so.
    """
    from medic.airflow_api import AirflowApi
    from medic.remediate import remediation

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
    from medic.diagnose import memory
    from medic.diagnose.embedding import get_embedder
    from medic.diagnose.knowledge import load_runbooks
    from medic.verify import verification

    embedder = get_embedder()
    with db.connect(config.get("conn_id"), application_name="medic-knowledge", autocommit=True) as conn:
        counts = memory.refresh_runbooks(conn, embedder, load_runbooks())
        counts["learned"] = verification.learn_verified(conn, embedder)
    return {"model": embedder.model_id, "revision": embedder.revision, **counts}
