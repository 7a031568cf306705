"""medic's cluster policy: every task with retries gets medic's retry policy, unless it has its own.

A deployment turns it on in its ``airflow_local_settings.py`` (in ``$AIRFLOW_HOME/config/`` or
anywhere on the ``PYTHONPATH`` of every Airflow component and worker)::

    from medic.policy.cluster import task_policy  # noqa: F401

Airflow applies ``task_policy`` to every task of every DAG it parses, in the dag-processor and
in the worker that runs the task (where the retry policy is evaluated). A task keeps a
``retry_policy`` it was given; a task without retries has nothing to decide; medic's own DAGs
(and ``[medic] skip_dag_ids``) are left alone.

airflow_local_settings is imported by every Airflow process as Airflow itself starts, so this
module stays light: the retry policy (Airflow's task SDK, medic's memory, the database client)
loads with the first task that gets it.
"""

from __future__ import annotations

from typing import Protocol

from medic import config


class PolicyTask(Protocol):
    """What the policy reads and sets on an operator (``BaseOperator`` or ``MappedOperator``)."""

    @property
    def dag_id(self) -> str: ...

    retries: int | None
    retry_policy: object | None


def wants_medic_policy(task: PolicyTask) -> bool:
    """A task of someone else's DAG, with retries and no retry policy of its own."""
    try:
        if str(task.dag_id) in config.skipped_dag_ids():
            return False
        return bool(task.retries) and getattr(task, "retry_policy", None) is None
    except Exception:  # an operator we cannot read is left as it is
        return False


def task_policy(task: PolicyTask) -> None:
    """Airflow's cluster-policy hook: give ``task`` medic's retry policy where it wants one."""
    if not wants_medic_policy(task):
        return
    # loaded at parse time, by the first task that gets it, not when Airflow starts
    from medic.policy.retry import MedicRetryPolicy  # noqa: PLC0415 - see the module docstring

    task.retry_policy = MedicRetryPolicy()
