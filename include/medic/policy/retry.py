"""medic's retry policy: at a task's failure, in the worker, medic's verified memory decides the retry.

Airflow 3.3 asks a task's ``retry_policy`` what to do with each failure before it schedules a
retry. medic knows, for failures it has seen before, whether a re-run fixed them: an exact
recurrence (the same fingerprint, derived exactly as the listener's failure record derives it)
of a failure that a retry was verified to resolve is retried (after the learned delay), one
that needed a person's change (or whose re-run failed) fails at once, so retries are not wasted
and the person hears of it now. Anything else, and any trouble (medic's database down, the
lookup over its time bound, an error of ours), is DEFAULT: the task's own retries apply.

The decision and its reason are kept for the listener, which runs later in the same process:
the failure record it captures carries them (``FailureRecord.retry_decision``). Airflow itself
stores the reason on a RETRY (``task_instance.retry_reason``); on 3.3 a FAIL's reason is only
logged, so the record is where medic's incident finds it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk.definitions.retry_policy import RetryAction, RetryDecision, RetryPolicy

from medic import config, db
from medic.capture.listener import _build as build_task_record  # the listener's own record, exactly
from medic.capture.records import safe_str
from medic.capture.scrub import scrub
from medic.contract import AUTO_SAFE_ACTIONS
from medic.diagnose.memory import prepare_record
from medic.verify.verification import verified_recurrences

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg
    from airflow.sdk.definitions.context import Context

    from medic.diagnose.knowledge import Match

log = logging.getLogger(__name__)

#: ``[medic] retry_policy_timeout_seconds``: the whole decision's bound inside the failing task.
TIMEOUT_KEY = "retry_policy_timeout_seconds"
#: Fixes only a person can make: a failure they fixed is not one a retry fixes.
PERSON_FIXES = frozenset({"fix_code", "fix_data", "fix_credentials"})
#: Airflow keeps at most this much of a reason (``task_instance.retry_reason``).
REASON_LIMIT = 500

Action = Literal["retry", "fail", "default"]


@dataclass(frozen=True)
class Precedent:
    """One incident with this exact fingerprint whose applied fix was verified."""

    incident_id: int
    error_class: str | None
    action: str | None
    outcome: str | None  # resolved | failed
    delay_seconds: int | None = None  # the remediation's delay (retry_with_backoff's learned wait)

    @property
    def resolved_by_retry(self) -> bool:
        return self.outcome == "resolved" and self.action in AUTO_SAFE_ACTIONS

    @property
    def not_fixed_by_retry(self) -> bool:
        """A person's change fixed it, or a re-run of it failed: a plain retry would be wasted."""
        return self.outcome == "failed" or (self.outcome == "resolved" and self.action in PERSON_FIXES)

    def describe(self) -> str:
        return f"incident {self.incident_id} ({self.error_class or 'unclassified'})"


@dataclass(frozen=True)
class Judgement:
    """What medic's memory says about a failure: the action, why, and the delay for a retry."""

    action: Action
    reason: str
    delay_seconds: float | None = None  # RETRY only; None: the task's own retry_delay
    precedents: tuple[int, ...] = ()

    def decision(self) -> RetryDecision:
        reason = self.reason[:REASON_LIMIT]
        if self.action == "retry":
            delay = None if self.delay_seconds is None else timedelta(seconds=self.delay_seconds)
            return RetryDecision.retry(delay=delay, reason=reason)
        if self.action == "fail":
            return RetryDecision.fail(reason=reason)
        return RetryDecision(action=RetryAction.DEFAULT, reason=reason)


def judge(precedents: Sequence[Precedent]) -> Judgement:
    """The decision from verified precedents of this exact failure, newest first.

    RETRY when a retry was verified to resolve it and nothing verified says otherwise; FAIL when
    it needed a person's fix or a re-run of it failed, and no retry ever resolved it; DEFAULT when
    there is no such memory or it disagrees with itself.
    """
    if not precedents:
        return Judgement("default", "medic: no verified fix of this exact failure yet")
    for_retry = [p for p in precedents if p.resolved_by_retry]
    against = [p for p in precedents if p.not_fixed_by_retry]
    ids = tuple(p.incident_id for p in (*for_retry, *against))
    if for_retry and against:
        return Judgement(
            "default",
            f"medic: memory disagrees: {for_retry[0].describe()} was resolved by {for_retry[0].action},"
            f" {against[0].describe()} {_not_fixed(against[0])}; the task's own retries apply",
            precedents=ids,
        )
    if for_retry:
        newest = for_retry[0]
        delay = newest.delay_seconds
        when = "now" if delay == 0 else ("after the task's own delay" if delay is None else f"after {delay} s")
        return Judgement(
            "retry",
            f"medic: exact recurrence of {newest.describe()}, verified resolved by {newest.action}"
            f"{_more(for_retry)}; retrying {when}",
            delay_seconds=None if delay is None else float(delay),
            precedents=ids,
        )
    if against:
        first = against[0]
        return Judgement(
            "fail",
            f"medic: exact recurrence of {first.describe()}, which {_not_fixed(first)}{_more(against)};"
            " failing now: a retry would not fix it",
            precedents=ids,
        )
    actions = sorted({str(p.action) for p in precedents})
    return Judgement(
        "default",
        f"medic: verified fixes of this failure ({', '.join(actions)}) say nothing about a plain retry",
        precedents=tuple(p.incident_id for p in precedents),
    )


def _not_fixed(p: Precedent) -> str:
    if p.outcome == "failed":
        return f"a re-run ({p.action}) did not fix"
    return f"was fixed only by {p.action} (a person's change)"


def _more(items: Sequence[Precedent]) -> str:
    return f" (and {len(items) - 1} more)" if len(items) > 1 else ""


def precedents_of(conn: psycopg.Connection, fingerprint: str | None) -> list[Precedent]:
    """Verified incidents of this exact fingerprint, newest first, with their remediation's delay."""
    matches: list[Match] = verified_recurrences(conn, fingerprint)
    ids = [int(m.source_key.removeprefix("incident:")) for m in matches]
    delays: dict[int, int | None] = {}
    if ids:
        rows = conn.execute(
            "SELECT incident_id, params->>'delay_seconds' FROM medic.remediations WHERE incident_id = ANY(%s)",
            (ids,),
        ).fetchall()
        delays = {int(incident_id): _seconds(value) for incident_id, value in rows}
    return [
        Precedent(incident_id, m.error_class, m.action, m.outcome, delays.get(incident_id))
        for incident_id, m in zip(ids, matches, strict=True)
    ]


def _seconds(value: object) -> int | None:
    try:
        seconds = int(str(value))
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


# ---- what the listener reads later in the same process ----------------------------------------
TryKey = tuple[str, str, str, int, int]
_decided: dict[TryKey, dict[str, Any]] = {}
_decided_lock = threading.Lock()


def _try_key(task_instance: object) -> TryKey | None:
    try:
        map_index = getattr(task_instance, "map_index", None)
        return (
            str(getattr(task_instance, "dag_id")),  # noqa: B009 - any object with these attributes
            str(getattr(task_instance, "run_id")),  # noqa: B009
            str(getattr(task_instance, "task_id")),  # noqa: B009
            -1 if map_index is None else int(map_index),
            int(getattr(task_instance, "try_number")),  # noqa: B009
        )
    except Exception:
        return None


def recorded_decision(task_instance: object) -> dict[str, Any] | None:
    """This process's decision on this try of ``task_instance``, as the failure record keeps it."""
    key = _try_key(task_instance)
    with _decided_lock:
        return dict(_decided[key]) if key in _decided else None


def _remember(task_instance: object, entry: dict[str, Any]) -> None:
    key = _try_key(task_instance)
    if key is None:
        return
    with _decided_lock:
        if len(_decided) > 64:  # one task per process; bounded all the same
            _decided.clear()
        _decided[key] = entry


# ---- the policy -----------------------------------------------------------------------------
@dataclass
class _Outcome:
    judgement: Judgement | None = None
    fingerprint: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class MedicRetryPolicy(RetryPolicy):
    """Retry, fail or default from medic's verified memory; never raises, never waits past its bound.

    ``retry_policy=MedicRetryPolicy()`` on a task, or every task with retries through the cluster
    policy (``medic.policy.cluster.task_policy``). ``timeout_seconds`` overrides
    ``[medic] retry_policy_timeout_seconds`` and ``conn_id`` overrides ``[medic] conn_id`` for this task.
    """

    timeout_seconds: float | None = None
    conn_id: str | None = None

    def evaluate(
        self,
        exception: BaseException,
        try_number: int,
        max_tries: int,
        context: Context | None = None,
    ) -> RetryDecision:
        evaluated_at = datetime.now(timezone.utc)
        started = time.monotonic()
        ti = context.get("ti") if context else None
        fingerprint: str | None = None
        try:
            judgement, fingerprint = self._judge(exception, try_number, max_tries, ti, context)
        except Exception as exc:  # the task's failure handling must never see an error of ours
            judgement = Judgement("default", f"medic: retry policy error ({type(exc).__name__}); task's own retries")
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        try:
            _remember(
                ti,
                {
                    "action": judgement.action,
                    "reason": judgement.reason[:REASON_LIMIT],
                    "delay_seconds": judgement.delay_seconds,
                    "precedents": list(judgement.precedents),
                    "fingerprint": fingerprint,
                    "evaluated_at": evaluated_at.isoformat(),
                    "elapsed_ms": elapsed_ms,
                },
            )
            log.info("medic: retry policy: %s in %.0f ms: %s", judgement.action, elapsed_ms, judgement.reason)
        except Exception:  # bookkeeping only
            pass
        return judgement.decision()

    def _timeout(self) -> float:
        if self.timeout_seconds is not None:
            return float(self.timeout_seconds)
        return config.get_float(TIMEOUT_KEY)

    def _judge(
        self, exception: BaseException, try_number: int, max_tries: int, ti: object, context: Context | None
    ) -> tuple[Judgement, str | None]:
        dag_id = str(getattr(ti, "dag_id", "") or "")
        if dag_id in config.skipped_dag_ids():
            return Judgement("default", "medic: never decides for its own DAGs"), None
        if try_number > max_tries:
            return Judgement("default", "medic: no retries left; medic's clear path takes the final failure"), None
        if ti is None:
            return Judgement("default", "medic: no task instance in the context"), None
        dag = context.get("dag") if context else None
        if config.get("manual_tag") in set(getattr(dag, "tags", None) or ()):
            return Judgement("default", "medic: the DAG opted out of automatic decisions (tag)"), None
        timeout = self._timeout()
        outcome = _Outcome()
        deadline = time.monotonic() + timeout

        def work() -> None:
            try:
                self._look_up(exception, ti, deadline, outcome)
            except Exception as exc:
                first_line = next(iter(safe_str(exc).splitlines()), "")
                outcome.error = f"{type(exc).__name__}: {scrub(first_line)[:200]}"  # it is kept and logged

        worker = threading.Thread(target=work, name="medic-retry-policy", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():  # abandoned: a daemon holding only its own connection
            return Judgement("default", f"medic: memory lookup took over {timeout:.1f} s; task's own retries"), None
        if outcome.error is not None:
            return Judgement("default", f"medic: memory unavailable ({outcome.error}); task's own retries"), None
        return outcome.judgement or Judgement("default", "medic: no decision"), outcome.fingerprint

    def _look_up(self, exception: BaseException, ti: object, deadline: float, outcome: _Outcome) -> None:
        prepared = prepare_record(build_task_record(ti, exception, "task"))  # type: ignore[arg-type]
        outcome.fingerprint = prepared.fingerprint
        if prepared.fingerprint is None:
            outcome.judgement = Judgement("default", "medic: the failure's signature is too vague to match exactly")
            return
        remaining = max(0.5, deadline - time.monotonic())
        with db.connect(
            self.conn_id or config.get("conn_id"),
            connect_timeout=max(1, int(remaining)),
            statement_timeout_ms=int(remaining * 1000),
            autocommit=True,
            application_name="medic-retry-policy",
        ) as conn:
            outcome.judgement = judge(precedents_of(conn, prepared.fingerprint))

    def serialize(self) -> dict[str, Any]:
        """Airflow stores only that a task has a policy; this is for anything that asks for more."""
        return {"__type": "MedicRetryPolicy", "timeout_seconds": self.timeout_seconds, "conn_id": self.conn_id}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> MedicRetryPolicy:
        return cls(timeout_seconds=data.get("timeout_seconds"), conn_id=data.get("conn_id"))
