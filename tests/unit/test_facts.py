"""The failure-text parser: chains, frames and the codes libraries print, on any input."""

from __future__ import annotations

import os
import time

import pytest

from medic.diagnose.facts import MAX_CHARS, Facts, parse

REQUESTS_CHAIN = """\
[2024-05-01T10:00:00.000+0000] {taskinstance.py:2698} ERROR - Task failed with exception
Traceback (most recent call last):
  File "/home/airflow/.local/lib/python3.11/site-packages/urllib3/connection.py", line 198, in _new_conn
    sock = connection.create_connection(
ConnectionRefusedError: [Errno 111] Connection refused

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/opt/airflow/dags/orders.py", line 12, in fetch_orders
    response = requests.get(url, timeout=30)
  File "/home/airflow/.local/lib/python3.11/site-packages/requests/adapters.py", line 519, in send
    raise ConnectionError(e, request=request)
requests.exceptions.ConnectionError: HTTPConnectionPool(host='orders-api.prod.internal', port=8000): Max \
retries exceeded with url: /v1/orders (Caused by NewConnectionError('<HTTPConnection object>: [Errno 111] \
Connection refused'))
[2024-05-01T10:00:00.100+0000] {taskinstance.py:1400} INFO - Marking task as FAILED.
"""


def test_a_direct_cause_chain_is_outermost_first_with_the_root_cause_last() -> None:
    facts = parse(REQUESTS_CHAIN)
    assert facts.outermost is not None and facts.outermost.type == "requests.exceptions.ConnectionError"
    assert facts.innermost is not None and facts.innermost.name == "ConnectionRefusedError"
    assert [e.link for e in facts.chain] == [None, "embedded", "cause"]
    assert facts.chain[1].name == "NewConnectionError"
    assert facts.raising_frame is not None and facts.raising_frame.function == "_new_conn"
    assert facts.raising_frame.library
    user = facts.innermost_user_frame
    assert user is not None and str(user) == "orders.py:fetch_orders" and not user.library
    assert "ECONNREFUSED" in facts.errnos
    assert facts.hosts[0] == "orders-api.prod.internal:8000" and not facts.local_endpoint
    assert "Marking task" not in facts.outermost.message  # a log record is not part of the message


def test_during_handling_is_a_context_link() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "/opt/airflow/dags/load.py", line 5, in run\n'
        "KeyError: 'region'\n\n"
        "During handling of the above exception, another exception occurred:\n\n"
        "Traceback (most recent call last):\n"
        '  File "/opt/airflow/dags/load.py", line 7, in run\n'
        "airflow.exceptions.AirflowException: no region configured\n"
    )
    facts = parse(text)
    assert [(e.name, e.link) for e in facts.chain] == [("AirflowException", None), ("KeyError", "context")]


def test_java_caused_by_chains_end_with_the_deepest_cause() -> None:
    text = (
        "org.apache.spark.SparkException: Job aborted due to stage failure: Task 3 in stage 2.0 failed 4 times\n"
        "\tat org.apache.spark.scheduler.DAGScheduler.failJobAndIndependentStages(DAGScheduler.scala:2450)\n"
        "Caused by: org.apache.hadoop.fs.FileAlreadyExistsException: rename failed\n"
        "\tat org.apache.hadoop.fs.FileSystem.rename(FileSystem.java:1500)\n"
        "Caused by: java.io.IOException: No space left on device\n"
        "\tat java.io.FileOutputStream.writeBytes(Native Method)\n"
    )
    facts = parse(text)
    assert [e.name for e in facts.chain] == ["SparkException", "FileAlreadyExistsException", "IOException"]
    assert facts.chain[2].link == "cause" and facts.chain[2].frames[0].library
    assert "ENOSPC" in facts.errnos and "stage_failure" in facts.spark_events


def test_py4j_prefix_and_log_prefixes_do_not_hide_the_exception_line() -> None:
    text = (
        "[2024-01-01, 00:00:00 UTC] {pyspark.py:10} ERROR - py4j.protocol.Py4JJavaError: An error occurred\n"
        ": java.lang.OutOfMemoryError: Java heap space\n"
    )
    facts = parse(text)
    assert [e.type for e in facts.chain] == ["java.lang.OutOfMemoryError"]
    assert facts.others[0].type == "py4j.protocol.Py4JJavaError"


def test_a_warning_printed_after_the_failure_does_not_become_the_failure() -> None:
    text = "psycopg2.errors.DeadlockDetected: deadlock detected\nDeprecationWarning: the old API is going away\n"
    facts = parse(text)
    assert facts.outermost is not None and facts.outermost.name == "DeadlockDetected"


@pytest.mark.parametrize(
    ("line", "kind", "value"),
    [
        ("requests.exceptions.HTTPError: 403 Client Error: Forbidden for url: https://x.example/a", "http", "403"),
        ("ERROR - HTTP status code 503 returned by the exporter", "http", "503"),
        ("urllib.error.HTTPError: HTTP Error 429: Too Many Requests", "http", "429"),
        ("got <Response [502]> from the gateway", "http", "502"),
        ("kubernetes.client.exceptions.ApiException: (404)", "http", "404"),
        ('{"error": {"code": 401, "message": "Request had invalid authentication credentials."}}', "http", "401"),
        (
            "botocore.exceptions.ClientError: An error occurred (403) when calling the HeadObject operation",
            "http",
            "403",
        ),
        ("psycopg2.errors.DeadlockDetected: deadlock detected (SQLSTATE 40P01)", "sqlstate", "40P01"),
        ("ERROR: sorry, too many clients already SQLSTATE: 53300", "sqlstate", "53300"),
        ("psycopg.OperationalError: connection failed, pgcode=08006", "sqlstate", "08006"),
        ("FATAL: password authentication failed for user etl (28P01)", "sqlstate", "28P01"),
        (
            "snowflake.connector.errors.ProgrammingError: 000630 (57014): Statement reached its timeout",
            "sqlstate",
            "57014",
        ),
        ("pyodbc.Error: ('40001', '[40001] [Microsoft][ODBC Driver 18 for SQL Server] victim')", "sqlstate", "40001"),
        ("ERROR 1045 (28000): Access denied for user 'etl'@'%'", "sqlstate", "28000"),
        ("pymysql.err.OperationalError: (1213, 'Deadlock found when trying to get lock')", "mysql", "1213"),
        ("ConnectionRefusedError: [Errno 111] Connection refused", "errno", "ECONNREFUSED"),
        ("('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))", "errno", "ECONNRESET"),
        ("TimeoutError: [Errno 110] Connection timed out", "errno", "ETIMEDOUT"),
        ("OSError: [Errno 28] No space left on device", "errno", "ENOSPC"),
        ("fork failed: Cannot allocate memory", "errno", "ENOMEM"),
        ("cat: /data/in.csv: No such file or directory", "errno", "ENOENT"),
        ("PermissionError: [Errno 13] Permission denied: '/data/out'", "errno", "EACCES"),
        ("socket.gaierror: [Errno -3] Temporary failure in name resolution", "errno", "EAI_AGAIN"),
        ("polars: failed to write: No space left on device (os error 28)", "errno", "ENOSPC"),
        ("INFO - Task exited with return code -9", "signal", "SIGKILL"),
        ("Last State: Terminated, Exit Code: 137", "signal", "SIGKILL"),
        ("INFO - Task exited with return code Negsignal.SIGKILL", "signal", "SIGKILL"),
        ("command terminated with exit code 143", "signal", "SIGTERM"),
        ("Process terminated by signal: signal=-15 signal_name=SIGTERM", "signal", "SIGTERM"),
        ("/bin/sh: line 1:  4242 Killed                  python job.py", "signal", "SIGKILL"),
        ("Bash command failed. The command returned a non-zero exit code 127.", "exit_code", "127"),
        ("subprocess.CalledProcessError: Command '['dbt', 'run']' returned non-zero exit status 2.", "exit_code", "2"),
        ("An error occurred (ThrottlingException) when calling the PutRecords operation", "aws", "ThrottlingException"),
        ("(Service: Amazon S3; Status Code: 403; Error Code: AccessDenied; Request ID: X)", "aws", "AccessDenied"),
        ("<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>", "aws", "SlowDown"),
        ("status = StatusCode.UNAVAILABLE details = failed to connect to all addresses", "grpc", "UNAVAILABLE"),
        ("grpc_status:4, grpc_message:Deadline Exceeded", "grpc", "DEADLINE_EXCEEDED"),
        ("429 RESOURCE_EXHAUSTED: Quota exceeded for quota metric", "grpc", "RESOURCE_EXHAUSTED"),
        (
            '{"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "too many requests"}',
            "vendor",
            "REQUEST_LIMIT_EXCEEDED",
        ),
        ('"reason": "rateLimitExceeded"', "vendor", "rateLimitExceeded"),
        ("State: Terminated, Reason: OOMKilled", "k8s", "OOMKilled"),
        ("Status: Failed, Reason: Evicted, Message: The node was low on resource: memory.", "k8s", "Evicted"),
        ("Back-off pulling image: container is waiting with ImagePullBackOff", "k8s", "ImagePullBackOff"),
        ("container base is in CrashLoopBackOff", "k8s", "CrashLoopBackOff"),
        ("Job was active longer than specified deadline, reason: DeadlineExceeded", "k8s", "DeadlineExceeded"),
        ("ExecutorLostFailure (executor 4 exited caused by one of the running tasks)", "spark", "executor_lost"),
        ("Container killed by YARN for exceeding physical memory limits", "spark", "yarn_memory_limit"),
        (
            "Container exited with a non-zero exit code. Exit status: -100. Container released",
            "spark",
            "yarn_exit_-100",
        ),
        ("Compilation Error in model orders (models/orders.sql)", "dbt", "compilation"),
        ("Database Error in model stg_users (models/staging/stg_users.sql)", "dbt", "database"),
        ("Env var required but not provided: 'DBT_USER'", "dbt", "env_var_missing"),
        ("airflow.exceptions.AirflowTaskTimeout: Timeout, PID: 1234", "airflow", "task_timeout"),
        ("Was the task killed externally?", "airflow", "killed_externally"),
        ("Detected zombie job: task heartbeat stopped", "airflow", "zombie"),
        ("Process terminated by signal: 9", "airflow", "process_signal"),
        ("State of this TI has been externally set to skipped.", "airflow", "externally_skipped"),
        ("AirflowNotFoundException: The conn_id `warehouse` isn't defined", "airflow", "connection_not_found"),
    ],
)
def test_codes_are_found_in_the_forms_libraries_print_them(line: str, kind: str, value: str) -> None:
    assert value in parse(line).values(kind)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "line",
    [
        "subprocess.CalledProcessError: Command 'x' returned non-zero exit status 137.",  # not an HTTP status
        "INFO - processed 404 rows and 503 files",  # numbers that carry no status
    ],
)
def test_numbers_are_not_taken_for_http_statuses_out_of_context(line: str) -> None:
    assert parse(line).http_statuses == ()


@pytest.mark.parametrize(
    ("text", "local"),
    [
        ("requests.exceptions.ConnectionError: HTTPConnectionPool(host='localhost', port=5000): refused", True),
        ('psycopg2.OperationalError: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed', True),
        ("ConnectionRefusedError: could not reach 127.0.0.1:8793", True),
        ("requests.exceptions.ConnectionError: HTTPSConnectionPool(host='api.example.com', port=443): refused", False),
    ],
)
def test_local_endpoints_are_recognised(text: str, local: bool) -> None:
    assert parse(text).local_endpoint is local


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        b"",
        "\n\n   \n",
        os.urandom(200_000),
        bytes(range(256)) * 500,
        "x" * (10 * 1024 * 1024),
        'File "' * 300_000,
        ("a." * 500_000) + "Error: x",
        "Traceback (most recent call last):\n" * 50_000,
        "(" * 200_000 + "ConnectionResetError(" * 20_000,
        "Caused by: " * 100_000,
        "The above exception was the direct cause of the following exception:\n" * 10_000,
        12345,
    ],
)
def test_any_input_gives_facts_quickly_and_never_raises(raw: object) -> None:
    started = time.monotonic()
    facts = parse(raw)
    assert isinstance(facts, Facts)
    assert time.monotonic() - started < 20  # generous: the CI machine is shared; typical is well under 1 s
    assert len(facts.chain) <= 32


def test_a_huge_log_is_read_from_its_tail() -> None:
    noise = "[2024-01-01 00:00:00,000] {x.py:1} INFO - step done\n" * 200_000
    facts = parse(noise + "psycopg2.errors.SerializationFailure: could not serialize access\n")
    assert facts.truncated and len(noise) > MAX_CHARS
    assert facts.innermost is not None and facts.innermost.name == "SerializationFailure"
