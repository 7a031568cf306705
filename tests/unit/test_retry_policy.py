"""medic's retry policy: the decision from verified memory, and its contract inside a failing task
(bounded, DEFAULT on any trouble, never raises); the cluster policy that hands it out."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta

import pendulum
import pytest
from airflow.sdk import DAG
from airflow.sdk.bases.operator import BaseOperator
from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryDecision

from medic import db
from medic.capture import listener
from medic.diagnose.knowledge import Match
from medic.diagnose.memory import prepare_record
from medic.policy import cluster, retry
from medic.policy.retry import MedicRetryPolicy, Precedent, judge
from tests.unit.test_records import FakeTaskInstance, Unprintable, _raise


def verified(incident_id: int, action: str, outcome: str, error_class: str = "network_transient") -> Match:
    """A row as ``verified_recurrences`` returns it: an incident of this fingerprint, fix verified."""
    return Match(
        0,
        "incident",
        f"incident:{incident_id}",
        error_class,
        action,
        action in ("retry", "retry_with_backoff"),
        outcome,
        f"incident {incident_id}",
        "",
        1.0,
        "fingerprint",
    )


@dataclass
class Memory:
    """medic's memory as the policy reads it: verified rows and each remediation's stored params."""

    rows: list[Match] = field(default_factory=list)
    delays: dict[int, object] = field(default_factory=dict)
    fingerprints: list[str | None] = field(default_factory=list)
    sleep: float = 0.0

    def verified_recurrences(self, conn: object, fingerprint: str | None) -> list[Match]:
        self.fingerprints.append(fingerprint)
        time.sleep(self.sleep)
        return list(self.rows)

    def execute(self, sql: str, params: tuple) -> Memory:
        assert "medic.remediations" in sql
        self._ids = params[0]
        return self

    def fetchall(self) -> list[tuple]:
        return [(i, self.delays[i]) for i in self._ids if i in self.delays]


@pytest.fixture
def memory(monkeypatch) -> Memory:
    """The policy's reads go to this memory; the database connection is a no-op stand-in."""
    import airflow.sdk  # noqa: F401  (in a task process it is loaded already)

    mem = Memory()
    monkeypatch.setattr(retry, "verified_recurrences", mem.verified_recurrences)
    monkeypatch.setattr(db, "connect", lambda *a, **k: contextlib.nullcontext(mem))
    monkeypatch.setenv("AIRFLOW__MEDIC__CONN_ID", "medic_db")
    return mem


@dataclass
class Dag:
    tags: set[str] = field(default_factory=set)


def context(ti: FakeTaskInstance, tags: set[str] | None = None) -> dict:
    return {"ti": ti, "dag": Dag(tags or set())}


def refused() -> BaseException:
    return _raise(ConnectionRefusedError(111, "Connection refused: orders-api.internal:443"))


def evaluate(policy: MedicRetryPolicy, exc: BaseException, ti: FakeTaskInstance, **kw: object) -> RetryDecision:
    return policy.evaluate(exc, ti.try_number, ti.max_tries, context(ti, **kw))  # type: ignore[arg-type]


# ---- the decision from memory ----------------------------------------------------------------


def test_no_memory_is_default() -> None:
    assert judge([]).action == "default"


def test_a_failure_a_retry_resolved_is_retried_now() -> None:
    decided = judge([Precedent(7, "network_transient", "retry", "resolved", 0)])
    assert (decided.action, decided.delay_seconds, decided.precedents) == ("retry", 0.0, (7,))
    assert decided.decision().retry_delay == timedelta(0)
    assert "incident 7 (network_transient)" in decided.reason and "retrying now" in decided.reason


def test_a_backoff_that_resolved_it_is_the_learned_delay() -> None:
    decided = judge(
        [
            Precedent(9, "rate_limited", "retry_with_backoff", "resolved", 300),
            Precedent(4, "rate_limited", "retry_with_backoff", "resolved", 600),
        ]
    )
    assert decided.action == "retry"
    assert decided.decision().retry_delay == timedelta(seconds=300)  # the newest verified one
    assert "(and 1 more)" in decided.reason


def test_without_a_stored_delay_the_task_keeps_its_own() -> None:
    decision = judge([Precedent(3, "rate_limited", "retry_with_backoff", "resolved", None)]).decision()
    assert decision.action is RetryAction.RETRY and decision.retry_delay is None


@pytest.mark.parametrize(
    ("action", "outcome", "says"),
    [
        ("fix_code", "resolved", "fixed only by fix_code"),
        ("fix_data", "resolved", "fixed only by fix_data"),
        ("fix_credentials", "resolved", "fixed only by fix_credentials"),
        ("retry", "failed", "a re-run (retry) did not fix"),
        ("fix_code", "failed", "a re-run (fix_code) did not fix"),
    ],
)
def test_a_failure_a_retry_does_not_fix_fails_now(action: str, outcome: str, says: str) -> None:
    decided = judge([Precedent(5, "code_bug", action, outcome)])
    assert decided.action == "fail" and decided.decision().action is RetryAction.FAIL
    assert says in decided.reason and "incident 5 (code_bug)" in decided.reason


def test_memory_that_disagrees_with_itself_is_default() -> None:
    resolved, failed = Precedent(8, "network_transient", "retry", "resolved", 0), Precedent(2, None, "retry", "failed")
    decided = judge([resolved, failed])
    assert decided.action == "default" and "disagrees" in decided.reason
    assert set(decided.precedents) == {8, 2}


def test_more_resources_says_nothing_about_a_plain_retry() -> None:
    decided = judge([Precedent(6, "resource_exhausted", "retry_with_more_resources", "resolved")])
    assert decided.action == "default" and "retry_with_more_resources" in decided.reason


def test_reasons_fit_what_airflow_keeps() -> None:
    many = [Precedent(10**12 + n, "network_transient", "retry", "resolved", 0) for n in range(50)]
    assert len(judge(many).decision().reason or "") <= retry.REASON_LIMIT


# ---- evaluate: in the failing task ----------------------------------------------------------------


def test_the_lookup_uses_the_fingerprint_of_the_listeners_record(memory: Memory) -> None:
    memory.rows = [verified(7, "retry", "resolved")]
    memory.delays = {7: "0"}
    ti, exc = FakeTaskInstance(try_number=1, max_tries=3), refused()
    decision = evaluate(MedicRetryPolicy(), exc, ti)
    assert decision.action is RetryAction.RETRY and decision.retry_delay == timedelta(0)
    assert decision.reason and decision.reason.startswith("medic: exact recurrence of incident 7")
    # the very fingerprint the listener's record of this failure gets, and that record carries the decision
    record = listener._build(ti, exc, "task")
    assert memory.fingerprints == [prepare_record(record).fingerprint] and memory.fingerprints[0]
    assert record.retry_decision is not None
    assert record.retry_decision["action"] == "retry" and record.retry_decision["reason"] == decision.reason
    assert record.retry_decision["precedents"] == [7] and record.retry_decision["delay_seconds"] == 0.0


def test_a_person_fixed_failure_fails_at_the_first_try(memory: Memory) -> None:
    memory.rows = [verified(3, "fix_code", "resolved", "code_bug")]
    ti = FakeTaskInstance(try_number=1, max_tries=3)
    decision = evaluate(MedicRetryPolicy(), _raise(KeyError("customer_id")), ti)
    assert decision.action is RetryAction.FAIL and "code_bug" in (decision.reason or "")
    assert retry.recorded_decision(ti)["action"] == "fail"  # type: ignore[index]
    other_try = replace(ti, try_number=2)
    assert retry.recorded_decision(other_try) is None


def test_a_stored_backoff_delay_is_used(memory: Memory) -> None:
    memory.rows = [verified(11, "retry_with_backoff", "resolved", "rate_limited")]
    memory.delays = {11: "120"}
    decision = evaluate(MedicRetryPolicy(), refused(), FakeTaskInstance(try_number=2, max_tries=3))
    assert decision.action is RetryAction.RETRY and decision.retry_delay == timedelta(seconds=120)


def test_no_retries_left_is_left_to_the_clear_path_without_a_lookup(memory: Memory) -> None:
    memory.rows = [verified(7, "retry", "resolved")]
    decision = evaluate(MedicRetryPolicy(), refused(), FakeTaskInstance(try_number=4, max_tries=3))
    assert decision.action is RetryAction.DEFAULT and "no retries left" in (decision.reason or "")
    assert memory.fingerprints == []


def test_medic_own_dags_and_opted_out_dags_are_default(memory: Memory) -> None:
    memory.rows = [verified(3, "fix_code", "resolved", "code_bug")]
    own = evaluate(MedicRetryPolicy(), refused(), FakeTaskInstance(dag_id="medic_diagnose", max_tries=2))
    opted_out = evaluate(MedicRetryPolicy(), refused(), FakeTaskInstance(max_tries=2), tags={"medic:manual"})
    assert own.action is RetryAction.DEFAULT and opted_out.action is RetryAction.DEFAULT
    assert memory.fingerprints == []


def test_a_slow_lookup_is_default_within_the_bound(memory: Memory) -> None:
    memory.rows = [verified(3, "fix_code", "resolved", "code_bug")]
    memory.sleep = 5
    started = time.monotonic()
    decision = evaluate(MedicRetryPolicy(timeout_seconds=0.5), refused(), FakeTaskInstance(max_tries=3))
    assert time.monotonic() - started < 1.5
    assert decision.action is RetryAction.DEFAULT and "over 0.5 s" in (decision.reason or "")


def test_the_bound_comes_from_the_configuration(memory: Memory, monkeypatch) -> None:
    memory.sleep = 5
    monkeypatch.setenv("AIRFLOW__MEDIC__RETRY_POLICY_TIMEOUT_SECONDS", "0.3")
    started = time.monotonic()
    decision = evaluate(MedicRetryPolicy(), refused(), FakeTaskInstance(max_tries=3))
    assert time.monotonic() - started < 1.2 and "over 0.3 s" in (decision.reason or "")


@pytest.fixture
def medic_db_at(monkeypatch):
    import airflow.sdk  # noqa: F401

    def point_at(host: str, port: int) -> None:
        conn = {"conn_type": "postgres", "host": host, "port": port, "login": "x", "schema": "medic"}
        monkeypatch.setenv("AIRFLOW_CONN_MEDIC_RETRY_TEST", json.dumps(conn))
        monkeypatch.setenv("AIRFLOW__MEDIC__CONN_ID", "medic_retry_test")
        db._cache.pop("medic_retry_test", None)

    return point_at


def test_database_down_is_default(medic_db_at) -> None:
    medic_db_at("127.0.0.1", 9)  # nothing listens: refused
    decision = evaluate(MedicRetryPolicy(timeout_seconds=5), refused(), FakeTaskInstance(max_tries=3))
    assert decision.action is RetryAction.DEFAULT and "memory unavailable" in (decision.reason or "")


def test_a_database_that_never_answers_is_default_within_the_bound(medic_db_at) -> None:
    server = socket.socket()  # accepts TCP connections, never answers
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    threading.Thread(target=lambda: server.accept(), daemon=True).start()
    medic_db_at("127.0.0.1", server.getsockname()[1])
    started = time.monotonic()
    decision = evaluate(MedicRetryPolicy(timeout_seconds=1), refused(), FakeTaskInstance(max_tries=3))
    elapsed = time.monotonic() - started
    server.close()
    assert elapsed < 2.0 and decision.action is RetryAction.DEFAULT


def test_never_raises(memory: Memory, monkeypatch) -> None:
    class Hostile:
        def __getattr__(self, name: str) -> object:
            raise RuntimeError(f"no {name}")

    def broken(*args: object) -> list[Match]:
        raise RuntimeError("memory exploded")

    policy = MedicRetryPolicy()
    cases = [
        (Unprintable(), {"ti": FakeTaskInstance(max_tries=3)}),  # an exception whose str() raises
        (refused(), {"ti": Hostile()}),
        (refused(), None),
        (refused(), {"ti": FakeTaskInstance(max_tries=3), "dag": Hostile()}),
    ]
    for exc, ctx in cases:
        assert policy.evaluate(exc, 1, 3, ctx).action is RetryAction.DEFAULT  # type: ignore[arg-type]
    monkeypatch.setattr(retry, "verified_recurrences", broken)
    failed = policy.evaluate(refused(), 1, 3, {"ti": FakeTaskInstance(max_tries=3)})  # type: ignore[arg-type]
    assert failed.action is RetryAction.DEFAULT and "memory exploded" in (failed.reason or "")
    monkeypatch.setenv("AIRFLOW__MEDIC__RETRY_POLICY_TIMEOUT_SECONDS", "not a number")
    bad_config = policy.evaluate(refused(), 1, 3, {"ti": FakeTaskInstance(max_tries=3)})  # type: ignore[arg-type]
    assert bad_config.action is RetryAction.DEFAULT and "ValueError" in (bad_config.reason or "")


def test_the_policy_survives_a_round_trip() -> None:
    policy = MedicRetryPolicy(timeout_seconds=1.5, conn_id="other")
    assert MedicRetryPolicy.deserialize(json.loads(json.dumps(policy.serialize()))) == policy


# ---- the cluster policy -------------------------------------------------------------------------


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))


def test_the_cluster_policy_gives_tasks_with_retries_medics_policy() -> None:
    own = ExceptionRetryPolicy(rules=[])
    with _dag("sales") as dag:
        plain = BaseOperator(task_id="plain", retries=3)
        none = BaseOperator(task_id="none", retries=0)
        mine = BaseOperator(task_id="mine", retries=3, retry_policy=own)
    with _dag("medic_diagnose"):
        medics = BaseOperator(task_id="medics", retries=2)
    for task in (plain, none, mine, medics):
        cluster.task_policy(task)
    assert isinstance(plain.retry_policy, MedicRetryPolicy) and plain.has_retry_policy
    assert none.retry_policy is None and medics.retry_policy is None
    assert mine.retry_policy is own
    assert dag.task_dict["plain"].retry_policy == MedicRetryPolicy()
