"""medic's settings, read through Airflow's own configuration: the ``[medic]`` section.

Every key can be set in ``airflow.cfg`` under ``[medic]`` or as ``AIRFLOW__MEDIC__<KEY>``.
The module must work in processes that never imported Airflow's configuration (the
``medic`` CLI, unit tests), so it reads the environment first and only consults
``airflow.configuration`` when that module is already loaded: importing it would create an
``airflow.cfg`` as a side effect.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Protocol

SECTION = "medic"

#: medic's own DAGs; the listener never captures their failures (no feedback loops).
MEDIC_DAG_IDS = frozenset({"medic_diagnose", "medic_sweep", "medic_knowledge_refresh"})

DEFAULTS: dict[str, str] = {
    # Connection id of medic's PostgreSQL (pgvector). Credentials live in the Connection only.
    "conn_id": "medic_db",
    # Diagnose tries that Airflow itself will retry (state up_for_retry). Off: they are
    # recorded but only the final failure is diagnosed.
    "diagnose_retries": "false",
    # Upper bound for all the listener's work inside the failing task's process.
    "listener_timeout_seconds": "3",
    # Bytes of the task log kept with a failure record (the tail, where the error is).
    "log_tail_bytes": "16384",
    # Characters of traceback kept with a failure record.
    "traceback_chars": "12000",
    # The trigger polls this often even without a NOTIFY (lost notifications, restarts).
    "trigger_poll_seconds": "5",
    # A signalled event that no diagnose run claimed within this is signalled again.
    "signal_lease_seconds": "60",
    # A claimed event that was not processed within this is claimable again.
    "claim_lease_seconds": "300",
    # After this many claims without success an event is dead-lettered (status invalid).
    "max_claim_attempts": "5",
    # Extra DAG ids to never capture, comma separated.
    "skip_dag_ids": "",
    # Sentence-transformers model: a name or a local path. The default loads offline.
    "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
    # auto: CUDA with fp16 when a GPU is present, else CPU. Or cpu, cuda, cuda:1, ...
    "embedding_device": "auto",
    "embedding_batch_size": "32",
    # Folder of runbook markdown files; empty: the runbooks shipped with the package.
    "runbooks_path": "",
    # How often the runbook watcher looks for changed runbooks.
    "runbook_poll_seconds": "60",
    # Neighbours retrieved per incident (exact fingerprint matches first, then vectors).
    "retrieval_top_k": "8",
    # Generation: none (retrieval only), cpu (transformers + xgrammar), vllm, or openai.
    "llm_backend": "none",
    # The generation environment's interpreter (cpu, vllm): a second Python environment that
    # Airflow never imports. Not used by openai (plain HTTP from a task on llm_queue).
    "llm_python": "",
    # The queue of the workers that have the generation environment (and the GPU).
    "llm_queue": "llm",
    # A local path (cpu, vllm) or the served model's name (openai).
    "llm_model": "",
    # openai: Connection with the server's base URL as host and the API key as password.
    "llm_conn_id": "medic_llm",
    "llm_max_new_tokens": "768",
    "llm_temperature": "0.0",
    # The whole batch, model load included; past it every incident of the batch escalates.
    "llm_timeout_seconds": "300",
    # Policy (docs/DESIGN.md, "Policy"): a novel failure's verified resolution by a retry at least
    # this similar (above the 99.9th percentile of similarities between failures of different classes).
    "verified_similarity": "0.80",
    # The evidence's confidence in its class at least this.
    "auto_confidence": "0.65",
    # Loop guard: at most this many automatic remediations per task in the window.
    "loop_guard_max": "3",
    "loop_guard_window_minutes": "60",
    # DAGs with this tag never get an automatic remediation (a person always approves).
    "manual_tag": "medic:manual",
    # Remediation: Connection to Airflow's own REST API (host = the api-server's URL, login and
    # password = a service user allowed to clear task instances). Nothing else applies a fix.
    "api_conn_id": "medic_airflow_api",
    # Approval: comma-separated user ids who may answer (empty: anyone allowed to answer HITL
    # tasks of medic_diagnose), and how long a request waits before nothing is applied.
    "approvers": "",
    "approval_timeout_minutes": "240",
    # On an unanswered approval: also escalate (true), or only mark the incident expired.
    "escalate_on_timeout": "true",
    # Optional Connection (host = a webhook URL) that gets a JSON post with each approval's link.
    "notify_conn_id": "",
    # Concurrent medic_diagnose runs. A run waiting for an approval holds no worker slot but
    # counts here: keep it well above the approvals you expect to be open at once.
    "diagnose_max_active_runs": "32",
    # Delay used for retry_with_backoff when the diagnosis gives none.
    "default_backoff_seconds": "300",
    # The safety-net sweep (medic_sweep): how often it runs, how far back it looks for final
    # failures no listener reported, how old a failure must be before the sweep takes it (the
    # listener's report wins while it can still arrive), and how many it records per run.
    "sweep_interval_minutes": "5",
    "sweep_lookback_minutes": "1440",
    "sweep_grace_seconds": "60",
    "sweep_max_records": "500",
    # Budget guardrail for generation (the GPU): the Airflow pool the generate task runs in.
    # Empty: default_pool. Name a pool only once it exists (`airflow pools set medic_llm 1 ...`):
    # Airflow never schedules a task whose pool is missing. And at most this
    # many incidents sent to the model per rolling hour; beyond it incidents are decided from
    # retrieval alone (as with no backend, and said so) until the hour frees budget. 0: no cap.
    "llm_pool": "",
    "max_generations_per_hour": "200",
    # Most DAG runs one remediation re-runs (an incident can span runs of the same task).
    "max_runs_per_remediation": "20",
}


class _Conf(Protocol):
    """The part of Airflow's config object read here (typed so, without importing Airflow)."""

    def has_option(self, section: str, key: str) -> bool: ...

    def get(self, section: str, key: str) -> object: ...


def _airflow_conf() -> _Conf | None:
    """Airflow's config object when this process already loaded it, else None."""
    module = sys.modules.get("airflow.configuration")
    conf: _Conf | None = getattr(module, "conf", None) if module else None
    return conf


def get(key: str) -> str:
    env = os.environ.get(f"AIRFLOW__{SECTION.upper()}__{key.upper()}")
    if env is not None:
        return env
    conf = _airflow_conf()
    if conf is not None:
        try:
            if conf.has_option(SECTION, key):
                return str(conf.get(SECTION, key))
        except Exception:  # a broken airflow.cfg must not break capture
            pass
    return DEFAULTS[key]


def get_bool(key: str) -> bool:
    return get(key).strip().lower() in {"1", "true", "yes", "on"}


def get_float(key: str) -> float:
    return float(get(key))


def get_int(key: str) -> int:
    return int(get(key))


@dataclass(frozen=True)
class OutboxSettings:
    """The knobs of the capture -> trigger -> claim chain, read once per use."""

    conn_id: str
    diagnose_retries: bool
    trigger_poll_seconds: float
    signal_lease_seconds: int
    claim_lease_seconds: int
    max_claim_attempts: int

    @classmethod
    def load(cls) -> OutboxSettings:
        return cls(
            conn_id=get("conn_id"),
            diagnose_retries=get_bool("diagnose_retries"),
            trigger_poll_seconds=get_float("trigger_poll_seconds"),
            signal_lease_seconds=get_int("signal_lease_seconds"),
            claim_lease_seconds=get_int("claim_lease_seconds"),
            max_claim_attempts=get_int("max_claim_attempts"),
        )


def skipped_dag_ids() -> frozenset[str]:
    extra = {d.strip() for d in get("skip_dag_ids").split(",") if d.strip()}
    return MEDIC_DAG_IDS | extra
