from __future__ import annotations

from datetime import datetime, timezone

from medic.records import FailureRecord


def record(
    n: int = 1,
    *,
    dag_id: str = "sales",
    task_id: str = "load",
    source: str = "task",
    message: str = "connection refused",
    exc: str = "ConnectionRefusedError",
    will_retry: bool = False,
    try_number: int = 1,
    run_id: str | None = None,
) -> FailureRecord:
    return FailureRecord(
        dag_id=dag_id,
        run_id=run_id or f"manual__run_{n}",
        task_id=task_id,
        try_number=try_number,
        state="up_for_retry" if will_retry else "failed",
        will_retry=will_retry,
        exception_type=exc,
        error_message=message,
        traceback=f"Traceback (most recent call last):\n{exc}: {message}\n" if source == "task" else "",
        failed_at=datetime.now(timezone.utc),
        source=source,  # type: ignore[arg-type]
    )
