"""medic's Airflow plugin: the listener (failures into the outbox; successes verify medic's fixes).

Kept thin: the logic is ``medic.capture``, plain Python with its own tests.
"""

from __future__ import annotations

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin


class _FailureListener:
    """Listener object: Airflow calls it in the task process, the scheduler and the api-server."""

    @hookimpl
    def on_task_instance_failed(self, previous_state, task_instance, error) -> None:
        try:
            from medic.capture import capture_failure

            capture_failure(task_instance, error)
        except Exception:  # the listener must never raise into the task
            import logging

            logging.getLogger("medic.capture").exception("medic: listener error (failure not captured)")

    @hookimpl
    def on_task_instance_success(self, previous_state, task_instance) -> None:
        try:
            from medic.capture import record_success

            record_success(task_instance)
        except Exception:  # the listener must never raise into the task
            import logging

            logging.getLogger("medic.capture").exception("medic: listener error (success not verified)")


class MedicPlugin(AirflowPlugin):
    name = "medic"
    listeners = [_FailureListener()]
