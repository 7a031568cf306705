"""medic's Airflow plugin: the listener (failures into the outbox; successes verify medic's fixes)
and the incidents view (a FastAPI app in the api-server, shown in the UI's navigation).

Kept thin: the logic is ``medic.capture.listener`` and ``medic.view.report``, plain Python with tests.
"""

from __future__ import annotations

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

from medic.view import EXTERNAL_VIEW


class _FailureListener:
    """Listener object: Airflow calls it in the task process, the scheduler and the api-server."""

    @hookimpl
    def on_task_instance_failed(self, previous_state, task_instance, error) -> None:
        try:
            from medic.capture.listener import capture_failure

            capture_failure(task_instance, error)
        except Exception:  # the listener must never raise into the task
            import logging

            logging.getLogger("medic.capture.listener").exception("medic: listener error (failure not captured)")

    @hookimpl
    def on_task_instance_success(self, previous_state, task_instance) -> None:
        try:
            from medic.capture.listener import record_success

            record_success(task_instance)
        except Exception:  # the listener must never raise into the task
            import logging

            logging.getLogger("medic.capture.listener").exception("medic: listener error (success not verified)")


class _BuiltOnFirstUse:
    """``fastapi_apps``, built when Airflow first reads it: only the api-server does, and every
    task process loads this plugin (importing FastAPI there would cost about a second)."""

    def __get__(self, instance: object, owner: type) -> list[dict]:
        from medic.view.app import plugin_app

        return [plugin_app()]


class MedicPlugin(AirflowPlugin):
    name = "medic"
    listeners = [_FailureListener()]
    fastapi_apps = _BuiltOnFirstUse()
    external_views = [EXTERNAL_VIEW]
