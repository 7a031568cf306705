"""medic as an Airflow provider: what ``airflow providers list`` shows and where ``[medic]`` is declared.

Airflow finds this through the ``apache_airflow_provider`` entry point (pyproject.toml), calls
:func:`get_provider_info` and validates the answer against its ``provider_info.schema.json``.
From then on the ``[medic]`` section is part of Airflow's configuration like ``[openlineage]``:
``airflow config get-value medic conn_id`` answers, ``airflow config list`` and the UI's
configuration page show every key with its description, and ``conf.get("medic", key)`` falls back
to the defaults declared here. :data:`OPTIONS` is the one place medic's settings and their
defaults are written; ``medic.config`` reads them.

Plain data, no Airflow import: ``medic.config`` loads this module in the ``medic`` command and in
the listener, where Airflow's configuration may not be loaded.

What the provider info has no place for: a retry policy. Airflow 3.3's schema knows no kind for
them; a task opts in by naming one (``retry_policy=MedicRetryPolicy()``, from
``medic.policy.retry``), and its bound is ``[medic] retry_policy_timeout_seconds`` below.
"""

from __future__ import annotations

from importlib import metadata
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:
    from collections.abc import Mapping

#: The distribution Airflow matches this provider info against (``package-name`` must equal it).
PACKAGE_NAME = "airflow-medic"
SECTION = "medic"
#: The first release; every option below exists since then.
FIRST_VERSION = "0.1.0"

OptionType = Literal["string", "boolean", "integer", "float"]


class _RequiredOption(TypedDict):
    description: str
    version_added: str | None
    type: OptionType
    example: str | None
    default: str


class ConfigOption(_RequiredOption, total=False):
    """One option as Airflow's provider info schema describes it (``definitions.option``)."""

    sensitive: bool


def _option(type_: OptionType, default: str, description: str, example: str | None = None) -> ConfigOption:
    """An option of the first release. No medic option is sensitive: credentials live in Connections,
    and options name Connections (``*_conn_id``), never hold what they contain."""
    return {
        "description": description.strip() + "\n",
        "version_added": FIRST_VERSION,
        "type": type_,
        "example": example,
        "default": default,
    }


OPTIONS: Mapping[str, ConfigOption] = MappingProxyType(
    {
        # capture: the listener inside the failing task's process, and the outbox
        "conn_id": _option(
            "string",
            "medic_db",
            "Connection id of medic's PostgreSQL (with pgvector). Credentials live in the Connection only.",
        ),
        "diagnose_retries": _option(
            "boolean",
            "false",
            "Also diagnose tries that Airflow will retry itself (state up_for_retry). Off: they are "
            "recorded, but only the final failure is diagnosed.",
        ),
        "listener_timeout_seconds": _option(
            "float",
            "3",
            "Upper bound of all the listener's work inside the failing task's process.",
        ),
        "log_tail_bytes": _option(
            "integer",
            "16384",
            "Bytes of the task log kept with a failure record: the tail, where the error is.",
        ),
        "traceback_chars": _option(
            "integer",
            "12000",
            "Characters of the traceback kept with a failure record.",
        ),
        "skip_dag_ids": _option(
            "string",
            "",
            "More DAG ids never to capture, comma separated. medic's own DAGs are always skipped.",
            example="scratch_dag,legacy_export",
        ),
        # the trigger and the claim chain
        "trigger_poll_seconds": _option(
            "float",
            "5",
            "The failure trigger polls the outbox this often even without a NOTIFY (lost notifications, restarts).",
        ),
        "signal_lease_seconds": _option(
            "integer",
            "60",
            "A signalled event that no medic_diagnose run claimed within this is signalled again.",
        ),
        "claim_lease_seconds": _option(
            "integer",
            "300",
            "A claimed event that was not processed within this (a crashed diagnose run) is claimable again.",
        ),
        "max_claim_attempts": _option(
            "integer",
            "5",
            "After this many claims without success an event is dead-lettered.",
        ),
        # diagnosis: embeddings, runbooks, retrieval
        "embedding_model": _option(
            "string",
            "sentence-transformers/all-MiniLM-L6-v2",
            "The sentence-transformers model: a name or a local path. The default loads offline.",
            example="/models/all-MiniLM-L6-v2",
        ),
        "embedding_device": _option(
            "string",
            "auto",
            "Where embeddings are computed. auto: CUDA with fp16 when a GPU is present, else CPU. "
            "Or cpu, cuda, cuda:1, ...",
            example="cpu",
        ),
        "embedding_batch_size": _option(
            "integer",
            "32",
            "Texts embedded per batch.",
        ),
        "runbooks_path": _option(
            "string",
            "",
            "A folder of runbook markdown files. Empty: the runbooks shipped with the package "
            "(medic/diagnose/runbooks).",
            example="/opt/airflow/runbooks",
        ),
        "runbook_poll_seconds": _option(
            "float",
            "60",
            "How often the runbook watcher looks for changed runbooks.",
        ),
        "retrieval_top_k": _option(
            "integer",
            "8",
            "Neighbours retrieved per incident (exact fingerprint matches first, then vectors).",
        ),
        # generation
        "llm_backend": _option(
            "string",
            "none",
            "Generation backend: none (retrieval only), llamacpp (a GGUF model on CPU), cpu (transformers "
            "+ xgrammar), vllm (a GPU), or openai (an OpenAI-compatible server over HTTP).",
            example="vllm",
        ),
        "llm_python": _option(
            "string",
            "",
            "The generation environment's interpreter (llamacpp, cpu, vllm): a second Python environment "
            "that Airflow never imports. Not used by openai (plain HTTP from a task on llm_queue).",
            example="/opt/medic-llm/bin/python",
        ),
        "llm_queue": _option(
            "string",
            "llm",
            "The queue of the workers that have the generation environment (and the GPU).",
        ),
        "llm_model": _option(
            "string",
            "",
            "The model: a local path (llamacpp, cpu, vllm), a packaged model's name "
            "(qwen2.5-coder-1.5b-instruct, smollm2-135m-instruct; assembled and sha256-checked at load), "
            "or the served model's name (openai). On a CPU worker: llamacpp with qwen2.5-coder-1.5b-instruct.",
            example="qwen2.5-coder-1.5b-instruct",
        ),
        "llm_cache_dir": _option(
            "string",
            "",
            "Where packaged models are assembled. Empty: $MEDIC_MODEL_CACHE, else ~/.cache/medic/models.",
            example="/opt/medic-models",
        ),
        "llm_threads": _option(
            "integer",
            "0",
            "CPU threads of the llamacpp and cpu backends; 0: one fewer than the cores the worker may use.",
            example="4",
        ),
        "llm_conn_id": _option(
            "string",
            "medic_llm",
            "openai: Connection with the server's base URL as host and the API key as password.",
        ),
        "llm_max_new_tokens": _option(
            "integer",
            "768",
            "Most tokens the model generates per diagnosis.",
        ),
        "llm_temperature": _option(
            "float",
            "0.0",
            "Sampling temperature of generation (0: greedy).",
        ),
        "llm_timeout_seconds": _option(
            "float",
            "300",
            "Bound of the whole generation batch, model load included; past it every incident of the batch escalates.",
        ),
        "llm_pool": _option(
            "string",
            "",
            "Budget guardrail: the Airflow pool the generate task runs in. Empty: default_pool. Name a "
            "pool only once it exists (airflow pools set medic_llm 1 ...): Airflow never schedules a task "
            "whose pool is missing.",
            example="medic_llm",
        ),
        "max_generations_per_hour": _option(
            "integer",
            "200",
            "Budget guardrail: at most this many incidents sent to the model per rolling hour; beyond "
            "it incidents are decided from retrieval alone (and say so) until the hour frees budget. "
            "0: no cap.",
        ),
        # policy
        "verified_similarity": _option(
            "float",
            "0.80",
            "Policy: a novel failure's verified resolution by a retry counts when at least this similar "
            "(above the 99.9th percentile of similarities between failures of different classes).",
        ),
        "auto_confidence": _option(
            "float",
            "0.65",
            "Policy: the evidence's confidence in its class must be at least this for an automatic fix.",
        ),
        "loop_guard_max": _option(
            "integer",
            "3",
            "Loop guard: at most this many remediations (automatic or approved) per task in the window.",
        ),
        "loop_guard_window_minutes": _option(
            "integer",
            "60",
            "Loop guard: the window of loop_guard_max.",
        ),
        "manual_tag": _option(
            "string",
            "medic:manual",
            "DAGs with this tag never get an automatic remediation or retry decision: a person always approves.",
        ),
        "retry_policy_timeout_seconds": _option(
            "float",
            "2",
            "Retry policy (medic.policy.retry.MedicRetryPolicy): bound of its whole decision inside the "
            "failing task; past it the task's own retries apply.",
        ),
        # remediation and approval
        "api_conn_id": _option(
            "string",
            "medic_airflow_api",
            "Connection to Airflow's own REST API (host = the api-server's URL, login and password = a "
            "service user allowed to clear task instances). Nothing else applies a fix.",
        ),
        "approvers": _option(
            "string",
            "",
            "Comma-separated user ids who may answer approvals. Empty: anyone allowed to answer "
            "human-in-the-loop tasks of medic_diagnose.",
            example="alice,bob",
        ),
        "approval_timeout_minutes": _option(
            "float",
            "240",
            "How long an approval request waits; after it nothing is applied.",
        ),
        "escalate_on_timeout": _option(
            "boolean",
            "true",
            "On an unanswered approval: also escalate the incident (true), or only mark it expired (false).",
        ),
        "notify_conn_id": _option(
            "string",
            "",
            "Optional Connection (host = a webhook URL) that gets a JSON post with each approval's link.",
            example="medic_webhook",
        ),
        "diagnose_max_active_runs": _option(
            "integer",
            "32",
            "Concurrent medic_diagnose runs. A run waiting for an approval holds no worker slot but counts "
            "here: keep it well above the approvals you expect to be open at once.",
        ),
        "default_backoff_seconds": _option(
            "integer",
            "300",
            "Delay of retry_with_backoff when the diagnosis gives none.",
        ),
        "max_runs_per_remediation": _option(
            "integer",
            "20",
            "Most DAG runs one remediation re-runs (an incident can span runs of the same task).",
        ),
        # the safety-net sweep (medic_sweep)
        "sweep_interval_minutes": _option(
            "float",
            "5",
            "How often medic_sweep looks for final failures no listener reported.",
        ),
        "sweep_lookback_minutes": _option(
            "float",
            "1440",
            "How far back medic_sweep looks.",
        ),
        "sweep_grace_seconds": _option(
            "float",
            "60",
            "A failure younger than this is left to its listener (whose report wins while it can still arrive).",
        ),
        "sweep_max_records": _option(
            "integer",
            "500",
            "Most records one sweep writes; the rest wait for the next.",
        ),
    }
)

#: key -> default, as declared above (the defaults ``medic.config`` falls back to).
DEFAULTS: Mapping[str, str] = MappingProxyType({key: option["default"] for key, option in OPTIONS.items()})


def _version() -> str:
    """The installed distribution's version (pyproject's), or the first release's in a source tree."""
    try:
        return metadata.version(PACKAGE_NAME)
    except metadata.PackageNotFoundError:
        return FIRST_VERSION


def get_provider_info() -> dict[str, Any]:
    """The provider info Airflow's ProvidersManager reads (``airflow/provider_info.schema.json``)."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Airflow Medic",
        "description": (
            "Self-healing pipelines for Apache Airflow 3: task failures are captured, diagnosed from "
            "medic's memory of past failures and runbooks (optionally with an LLM), and remediated "
            "through Airflow's REST API with a person in the loop.\n"
        ),
        "versions": [_version()],
        "integrations": [
            {
                "integration-name": "Airflow Medic",
                "tags": ["service"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Airflow Medic",
                # FailureEventTrigger, RunbookChangeTrigger, VerifiedOutcomeTrigger
                "python-modules": ["medic.triggers.watchers"],
            }
        ],
        # further notifiers are appended here
        "notifications": ["medic.remediate.operators.ApprovalLinkNotifier"],
        "plugins": [
            {
                "name": "medic",
                "plugin-class": "medic.plugin.MedicPlugin",
            }
        ],
        "config": {
            SECTION: {
                "description": (
                    "airflow-medic: capture, diagnosis, policy and remediation of task failures. Every key "
                    "can also be set as AIRFLOW__MEDIC__<KEY>.\n"
                ),
                "options": {key: dict(option) for key, option in OPTIONS.items()},
            }
        },
    }
