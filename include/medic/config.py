"""medic's settings, read through Airflow's own configuration: the ``[medic]`` section.

medic is an Airflow provider (``medic.provider``), which declares every key of ``[medic]`` with its
default and description; that declaration is the one source of defaults. Every key can be set in
``airflow.cfg`` under ``[medic]`` or as ``AIRFLOW__MEDIC__<KEY>``.

The module must work in processes that never imported Airflow's configuration (the ``medic``
CLI, unit tests): importing it would create an ``airflow.cfg`` as a side effect. So it asks
``airflow.configuration.conf`` only when that module is already loaded (every Airflow process:
scheduler, dag-processor, triggerer, task), and otherwise reads ``AIRFLOW__MEDIC__<KEY>`` itself,
then the declared default.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Protocol

from medic import provider

SECTION = provider.SECTION

#: medic's own DAGs; the listener never captures their failures (no feedback loops).
MEDIC_DAG_IDS = frozenset({"medic_diagnose", "medic_sweep", "medic_knowledge_refresh"})


class _Conf(Protocol):
    """The part of Airflow's config object read here (typed so, without importing Airflow)."""

    def get(self, section: str, key: str, fallback: str) -> object: ...


def _airflow_conf() -> _Conf | None:
    """Airflow's config object when this process already loaded it, else None."""
    module = sys.modules.get("airflow.configuration")
    conf: _Conf | None = getattr(module, "conf", None) if module else None
    return conf


def env_name(key: str) -> str:
    """The environment variable Airflow reads for ``[medic] key``."""
    return f"AIRFLOW__{SECTION.upper()}__{key.upper()}"


def default(key: str) -> str:
    """The default ``medic.provider`` declares for ``key``; KeyError for a key medic does not have."""
    return provider.DEFAULTS[key]


def get(key: str) -> str:
    """``[medic] key`` as a string: Airflow's configuration when loaded (environment, airflow.cfg,
    ``_cmd``/``_secret``, the provider's defaults), else the environment, else the declared default."""
    fallback = default(key)
    conf = _airflow_conf()
    if conf is not None:
        try:
            return str(conf.get(SECTION, key, fallback=fallback))
        except Exception:  # a broken airflow.cfg must not break capture: read the environment
            pass
    return os.environ.get(env_name(key), fallback)


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
