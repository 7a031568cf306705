"""medic's Airflow plugin: the listener (failures into the outbox; successes verify medic's fixes)
and the incidents view (a FastAPI app in the api-server, shown in the UI's navigation).

Part of the package so the provider info can name it (``medic.plugin.MedicPlugin``): a wheel
carries it, where ``plugins/medic_plugin.py`` (the bundle's plugins folder, which Airflow loads)
only re-exports it. Kept thin: the logic is ``medic.capture.listener`` and ``medic.view.report``,
plain Python with tests.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

from medic.view import EXTERNAL_VIEW

if TYPE_CHECKING:
    from airflow.utils.state import TaskInstanceState

    from medic.capture.listener import TaskError, TaskInstance


class _FailureListener:
    """Listener object: Airflow calls it in the task process, the scheduler and the api-server."""

    @hookimpl
    def on_task_instance_failed(
        self, previous_state: TaskInstanceState | None, task_instance: TaskInstance, error: TaskError
    ) -> None:
        try:
            # Imported on the first report, inside the guard: every Airflow process loads this
            # plugin, and not even a broken install may raise into the task.
            from medic.capture.listener import capture_failure  # noqa: PLC0415

            capture_failure(task_instance, error)
        except Exception:  # the listener must never raise into the task
            logging.getLogger("medic.capture.listener").exception("medic: listener error (failure not captured)")

    @hookimpl
    def on_task_instance_success(self, previous_state: TaskInstanceState | None, task_instance: TaskInstance) -> None:
        try:
            from medic.capture.listener import record_success  # noqa: PLC0415 (as above)

            record_success(task_instance)
        except Exception:  # the listener must never raise into the task
            logging.getLogger("medic.capture.listener").exception("medic: listener error (success not verified)")


class _BuiltOnFirstUse:
    """``fastapi_apps``, built when Airflow first reads it: only the api-server does, and every
    task process loads this plugin (importing FastAPI there would cost about a second)."""

    def __get__(self, instance: object, owner: type) -> list[dict[str, Any]]:
        from medic.view.app import plugin_app

        return [plugin_app()]


class MedicPlugin(AirflowPlugin):
    name = "medic"
    listeners = [_FailureListener()]
    fastapi_apps = _BuiltOnFirstUse()
    external_views = [EXTERNAL_VIEW]
