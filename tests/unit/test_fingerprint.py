from __future__ import annotations

from medic.diagnose.fingerprint import last_exception, message_template, signature, user_frames

TB = """Traceback (most recent call last):
  File "/opt/venv/lib/python3.11/site-packages/airflow/sdk/execution_time/task_runner.py", line 900, in run
    result = _execute_task(context, ti, log)
  File "/usr/local/airflow/dags/sales.py", line 42, in load
    rows = fetch(day)
  File "/usr/local/airflow/include/etl/fetch.py", line 17, in fetch
    return client.get(url)
  File "/opt/venv/lib/python3.11/site-packages/httpx/_client.py", line 1041, in get
    raise ReadTimeout("timed out")
httpx.ReadTimeout: timed out
"""


def test_template_masks_what_changes_between_reruns() -> None:
    a = message_template("read timed out after 30s on 10.0.3.7:5432 at 2026-03-01T10:00:01Z (id 7f3a9c0e12ab)")
    b = message_template("read timed out after 31s on 10.0.9.1:5432 at 2026-03-02T11:30:59Z (id 0b1c2d3e4f56)")
    assert a == b
    assert "<ip>" in a and "<ts>" in a


def test_same_failure_same_fingerprint_different_cause_different_fingerprint() -> None:
    first = signature("FileNotFoundError", "No such file: '/data/landing/orders_2026-01-01.csv'")
    rerun = signature("FileNotFoundError", "No such file: '/data/landing/orders_2026-01-02.csv'")
    other = signature("PermissionError", "Permission denied: '/data/landing/orders_2026-01-01.csv'")
    assert first.fingerprint == rerun.fingerprint
    assert first.fingerprint != other.fingerprint
    assert signature("KeyError", "'customer_id'").fingerprint != signature("KeyError", "'amount'").fingerprint


def test_user_frames_skip_libraries() -> None:
    assert user_frames(TB) == ["sales.py:load", "fetch.py:fetch"]


def test_type_and_message_recovered_from_text_when_no_exception_object() -> None:
    assert last_exception(TB) == ("httpx.ReadTimeout", "timed out")
    sig = signature(None, "", TB)
    assert sig.exception_type == "ReadTimeout"
    assert sig.frames == ("sales.py:load", "fetch.py:fetch")
