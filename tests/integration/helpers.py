from __future__ import annotations

from datetime import datetime, timezone

from medic.capture import outbox
from medic.capture.records import FailureRecord
from medic.contract import Diagnosis
from medic.diagnose import incidents

#: the diagnosis integration tests give a filed incident: a transient failure, retried
RETRY_DIAGNOSIS = Diagnosis(
    error_class="network_transient",
    transience="transient",
    root_cause="connection refused",
    action="retry",
    confidence=0.9,
    explanation="transient",
)


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


def filed_incident_id(conn, n: int, *, task_id: str = "load", try_number: int = 1) -> int:
    """A real incident: failure ``n`` captured, claimed and filed as the DAG does (autocommit ``conn``)."""
    outbox.record_failure(conn, record(n, task_id=task_id, try_number=try_number), diagnose_retries=False)
    owner = f"run-{n}"
    ids = outbox.claim_pending(conn, owner=owner, lease_seconds=60, max_attempts=5)
    (incident_id,) = incidents.file_claimed_events(conn, ids, owner).incident_ids
    return incident_id
