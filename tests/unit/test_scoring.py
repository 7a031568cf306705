"""Class scores from facts: documented library behaviour, look-alikes, and explanations.

The cases are written from the libraries' own documentation and source (exception classes,
error codes, messages), not taken from the labelled development failures.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pytest

from medic.contract import ERROR_CLASSES
from medic.diagnose.facts import parse
from medic.diagnose.knowledge import load_runbooks
from medic.diagnose.scoring import (
    AIRFLOW_EVENTS,
    AWS_CODES,
    DBT_ERRORS,
    ERRNO,
    GRPC_STATUS,
    HTTP_STATUS,
    K8S_REASONS,
    MYSQL_ERRORS,
    PHRASES,
    QUALIFIED,
    SIGNALS,
    SPARK_EVENTS,
    SQLSTATE_CLASS,
    SQLSTATE_EXACT,
    TYPE_WEIGHTS,
    VENDOR_CODES,
    explain,
    score_classes,
)

if TYPE_CHECKING:
    from collections.abc import Mapping


def best(text: str) -> str | None:
    return explain(None, text).best[0]


CASES = [
    # network_transient
    ("ConnectionResetError: [Errno 104] Connection reset by peer", "network_transient"),
    ("http.client.RemoteDisconnected: Remote end closed connection without response", "network_transient"),
    ("socket.gaierror: [Errno -3] Temporary failure in name resolution", "network_transient"),
    ("ssl.SSLEOFError: EOF occurred in violation of protocol (_ssl.c:2393)", "network_transient"),
    ("psycopg2.OperationalError: SSL SYSCALL error: EOF detected", "network_transient"),
    ("httpx.RemoteProtocolError: Server disconnected without sending a response.", "network_transient"),
    ("pymysql.err.OperationalError: (2013, 'Lost connection to MySQL server during query')", "network_transient"),
    (
        "botocore.exceptions.ConnectionClosedError: Connection was closed before we received a valid response",
        "network_transient",
    ),
    # rate_limited
    ("requests.exceptions.HTTPError: 429 Client Error: Too Many Requests for url: https://api.x.io/v1", "rate_limited"),
    (
        "botocore.exceptions.ClientError: An error occurred (ThrottlingException) when calling the GetJobRun operation",
        "rate_limited",
    ),
    (
        "botocore.exceptions.ClientError: An error occurred (SlowDown) when calling the"
        " PutObject operation: Please reduce your request rate.",
        "rate_limited",
    ),
    ("google.api_core.exceptions.ResourceExhausted: 429 Quota exceeded for quota metric 'Requests'", "rate_limited"),
    ("openai.RateLimitError: Error code: 429 - rate limit reached for requests", "rate_limited"),
    (
        "databricks.sdk.errors.platform.TooManyRequests: REQUEST_LIMIT_EXCEEDED: rejected due to rate limiting",
        "rate_limited",
    ),
    # upstream_unavailable
    (
        "requests.exceptions.HTTPError: 503 Server Error: Service Unavailable for url: https://api.x.io/v1",
        "upstream_unavailable",
    ),
    (
        "google.api_core.exceptions.ServiceUnavailable: 503 The service is currently unavailable.",
        "upstream_unavailable",
    ),
    ("psycopg2.OperationalError: FATAL:  the database system is starting up", "upstream_unavailable"),
    (
        "botocore.exceptions.ClientError: An error occurred (InternalError) when calling the GetObject operation",
        "upstream_unavailable",
    ),
    (
        'psycopg2.OperationalError: connection to server at "db.prod.internal"'
        " (10.0.0.4), port 5432 failed: Connection refused",
        "upstream_unavailable",
    ),
    (
        'grpc._channel._InactiveRpcError: status = StatusCode.UNAVAILABLE details = "Socket closed"',
        "upstream_unavailable",
    ),
    # resource_exhausted
    ("MemoryError: Unable to allocate 3.2 GiB for an array", "resource_exhausted"),
    ("java.lang.OutOfMemoryError: Java heap space", "resource_exhausted"),
    ("OSError: [Errno 28] No space left on device", "resource_exhausted"),
    ("INFO - Task exited with return code -9", "resource_exhausted"),
    ("Pod failed: container base terminated, reason: OOMKilled, exit code: 137", "resource_exhausted"),
    ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB", "resource_exhausted"),
    (
        'psycopg2.errors.DiskFull: could not write to file "base/pgsql_tmp/t1": No space left on device',
        "resource_exhausted",
    ),
    (
        "ExecutorLostFailure (executor 3 exited caused by one of the running tasks) Reason:"
        " Container killed by YARN for exceeding physical memory limits",
        "resource_exhausted",
    ),
    # timeout
    ("airflow.exceptions.AirflowTaskTimeout: Timeout, PID: 4242", "timeout"),
    ("psycopg2.errors.QueryCanceled: canceling statement due to statement timeout", "timeout"),
    ("google.api_core.exceptions.DeadlineExceeded: 504 Deadline Exceeded", "timeout"),
    (
        "requests.exceptions.ReadTimeout: HTTPSConnectionPool(host='api.x.io',"
        " port=443): Read timed out. (read timeout=60)",
        "timeout",
    ),
    ("subprocess.TimeoutExpired: Command 'spark-submit' timed out after 3600 seconds", "timeout"),
    (
        "snowflake.connector.errors.ProgrammingError: 000630 (57014): Statement reached its"
        " statement or warehouse timeout of 600 second(s)",
        "timeout",
    ),
    # worker_lost
    ("billiard.exceptions.WorkerLostError: Worker exited prematurely: exitcode 155", "worker_lost"),
    ("Detected zombie job with dag_id etl, task_id load", "worker_lost"),
    (
        "The executor reports the task instance finished (failed) although the task says"
        " it's running. Was the task killed externally?",
        "worker_lost",
    ),
    (
        "Pod etl-1 status: Failed, reason: Evicted, message: The node was low on resource: ephemeral-storage",
        "worker_lost",
    ),
    ("The node was preempted by the cloud provider while the pod was running", "worker_lost"),
    ("ERROR - Received SIGTERM. Terminating subprocesses.", "worker_lost"),
    # db_contention
    ("psycopg2.errors.DeadlockDetected: deadlock detected", "db_contention"),
    ("psycopg2.errors.SerializationFailure: could not serialize access due to concurrent update", "db_contention"),
    ("pymysql.err.OperationalError: (1205, 'Lock wait timeout exceeded; try restarting transaction')", "db_contention"),
    (
        "sqlalchemy.exc.TimeoutError: QueuePool limit of size 5 overflow 0 reached, connection timed out",
        "db_contention",
    ),
    (
        "psycopg2.OperationalError: FATAL:  remaining connection slots are reserved for superuser connections",
        "db_contention",
    ),
    ("sqlite3.OperationalError: database is locked", "db_contention"),
    ("delta.exceptions.ConcurrentAppendException: Files were added by a concurrent update.", "db_contention"),
    # auth_failure
    (
        "botocore.exceptions.ClientError: An error occurred (AccessDenied) when calling"
        " the ListObjectsV2 operation: Access Denied",
        "auth_failure",
    ),
    ('psycopg2.OperationalError: FATAL:  password authentication failed for user "etl"', "auth_failure"),
    ("google.api_core.exceptions.PermissionDenied: 403 Permission denied on resource project acme", "auth_failure"),
    ("requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: https://api.x.io/v1", "auth_failure"),
    ("google.auth.exceptions.RefreshError: ('invalid_grant: Bad Request', {'error': 'invalid_grant'})", "auth_failure"),
    (
        "snowflake.connector.errors.DatabaseError: 250001 (08001): Failed to connect:"
        " Incorrect username or password was specified.",
        "auth_failure",
    ),
    ("psycopg2.errors.InsufficientPrivilege: permission denied for table orders", "auth_failure"),
    # missing_input
    (
        "botocore.errorfactory.NoSuchKey: An error occurred (NoSuchKey) when calling the GetObject operation",
        "missing_input",
    ),
    ("FileNotFoundError: [Errno 2] No such file or directory: '/data/in/2024-05-01.csv'", "missing_input"),
    ("pyspark.sql.utils.AnalysisException: Path does not exist: gs://bucket/raw/dt=2024-05-01", "missing_input"),
    ("google.api_core.exceptions.NotFound: 404 Not found: Table p:d.t was not found in location US", "missing_input"),
    ('psycopg2.errors.UndefinedTable: relation "raw.events" does not exist', "missing_input"),
    ("pandas.errors.EmptyDataError: No columns to parse from file", "missing_input"),
    # data_quality
    ('psycopg2.errors.InvalidTextRepresentation: invalid input syntax for type integer: "abc"', "data_quality"),
    ('psycopg2.errors.UniqueViolation: duplicate key value violates unique constraint "pk"', "data_quality"),
    (
        "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xe9 in position 10: invalid continuation byte",
        "data_quality",
    ),
    ("pandas.errors.ParserError: Error tokenizing data. C error: Expected 3 fields in line 7, saw 4", "data_quality"),
    ("pyarrow.lib.ArrowInvalid: Could not convert 'x' with type str: tried to convert to int64", "data_quality"),
    ("ValueError: time data '31/12/2024' does not match format '%Y-%m-%d'", "data_quality"),
    (
        "sqlalchemy.exc.IntegrityError: (psycopg2.errors.NotNullViolation) null value in"
        ' column "id" violates not-null constraint',
        "data_quality",
    ),
    ("Failure in test unique_orders_id (models/schema.yml): Got 3 results, configured to fail if != 0", "data_quality"),
    # code_bug
    ("NameError: name 'pd' is not defined", "code_bug"),
    ("AttributeError: 'NoneType' object has no attribute 'split'", "code_bug"),
    ('TypeError: can only concatenate str (not "int") to str', "code_bug"),
    ("ZeroDivisionError: division by zero", "code_bug"),
    ("jinja2.exceptions.UndefinedError: 'params' is undefined", "code_bug"),
    ('psycopg2.errors.SyntaxError: syntax error at or near "SELEC"', "code_bug"),
    (
        "Compilation Error in model stg_orders (models/staging/stg_orders.sql): macro"
        " 'dbt_macro__x' takes no keyword argument 'y'",
        "code_bug",
    ),
    # dependency_error
    ("ModuleNotFoundError: No module named 'pandas'", "dependency_error"),
    ("ImportError: cannot import name 'soft_unicode' from 'markupsafe'", "dependency_error"),
    ("java.lang.ClassNotFoundException: org.postgresql.Driver", "dependency_error"),
    ("/bin/bash: line 1: spark-submit: command not found", "dependency_error"),
    ("OSError: libcudart.so.12: cannot open shared object file: No such file or directory", "dependency_error"),
    ("AttributeError: module 'numpy' has no attribute 'float'", "dependency_error"),
    # config_error
    ("airflow.exceptions.AirflowNotFoundException: The conn_id `postgres_dwh` isn't defined", "config_error"),
    ("airflow.sdk.exceptions.AirflowRuntimeError: CONNECTION_NOT_FOUND: {'conn_id': 'dwh'}", "config_error"),
    ("botocore.exceptions.NoRegionError: You must specify a region.", "config_error"),
    ("requests.exceptions.MissingSchema: Invalid URL 'api/v1': No scheme supplied.", "config_error"),
    ("airflow.exceptions.AirflowConfigException: section/key [smtp/smtp_host] not found in config", "config_error"),
    (
        "requests.exceptions.SSLError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify"
        " failed: unable to get local issuer certificate",
        "config_error",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[f"{c}-{i}" for i, (_, c) in enumerate(CASES)])
def test_documented_failures_land_in_their_class(text: str, expected: str) -> None:
    evidence = explain(None, text)
    assert evidence.best[0] == expected, (evidence.raw, evidence.reasons(evidence.best[0] or "", 4))


def test_every_class_is_covered_by_the_cases() -> None:
    assert {c for _, c in CASES} == set(ERROR_CLASSES)


# ---- look-alikes: the same words, a different cause, told apart by documented behaviour -------------
def test_connection_refused_to_localhost_is_a_missing_setting_and_to_a_real_host_an_outage() -> None:
    local = (
        "requests.exceptions.ConnectionError: HTTPConnectionPool(host='localhost',"
        " port=8080): [Errno 111] Connection refused"
    )
    remote = (
        "requests.exceptions.ConnectionError: HTTPConnectionPool(host='api.partner.io',"
        " port=443): [Errno 111] Connection refused"
    )
    assert best(local) == "config_error"
    assert best(remote) == "upstream_unavailable"
    assert any("local endpoint" in r for r in explain(None, local).reasons("config_error"))


def test_libpq_falling_back_to_the_unix_socket_means_no_host_was_configured() -> None:
    text = (
        'psycopg2.OperationalError: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed: '
        "No such file or directory\n\tIs the server running locally and accepting connections on that socket?"
    )
    assert best(text) == "config_error"


def test_key_error_from_os_environ_is_configuration_and_from_user_code_a_bug() -> None:
    environ = (
        "Traceback (most recent call last):\n"
        '  File "/opt/airflow/dags/sync.py", line 9, in sync\n'
        '  File "/usr/local/lib/python3.11/os.py", line 679, in __getitem__\n'
        "KeyError: 'SYNC_TARGET'\n"
    )
    user = (
        "Traceback (most recent call last):\n"
        '  File "/opt/airflow/dags/sync.py", line 9, in sync\n'
        "KeyError: 'customer_id'\n"
    )
    assert best(environ) == "config_error"
    assert best(user) == "code_bug"


def test_key_error_inside_a_libraries_configuration_code_is_configuration() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "/opt/airflow/dags/report.py", line 3, in build\n'
        '  File "/usr/local/lib/python3.11/site-packages/vendor_sdk/config.py", line 40, in load\n'
        "KeyError: 'endpoint'\n"
    )
    assert best(text) == "config_error"


def test_a_missing_program_is_a_dependency_and_a_missing_file_is_missing_input() -> None:
    program = (
        "Traceback (most recent call last):\n"
        '  File "/usr/local/lib/python3.11/subprocess.py", line 1026, in __init__\n'
        '  File "/usr/local/lib/python3.11/subprocess.py", line 1950, in _execute_child\n'
        "FileNotFoundError: [Errno 2] No such file or directory: 'java'\n"
    )
    data = "FileNotFoundError: [Errno 2] No such file or directory: '/data/landing/orders.csv'"
    assert best(program) == "dependency_error"
    assert best(data) == "missing_input"


def test_an_attribute_missing_on_a_module_is_a_version_mismatch() -> None:
    assert best("AttributeError: module 'sqlalchemy' has no attribute 'Row'") == "dependency_error"
    assert best("AttributeError: 'dict' object has no attribute 'iteritems'") == "code_bug"


def test_a_type_error_between_two_installed_libraries_is_a_version_mismatch() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "/usr/local/lib/python3.11/site-packages/airflow/providers/x/hooks/x.py", line 80, in run\n'
        '  File "/usr/local/lib/python3.11/site-packages/x_sdk/client.py", line 12, in __init__\n'
        "TypeError: Client.__init__() got an unexpected keyword argument 'timeout_s'\n"
    )
    assert best(text) == "dependency_error"


def test_a_services_own_code_outranks_the_http_status_it_travels_in() -> None:
    bigquery = (
        "google.api_core.exceptions.Forbidden: 403 Exceeded rate limits: too many api"
        ' requests per user "reason": "rateLimitExceeded"'
    )
    s3 = (
        "botocore.exceptions.ClientError: An error occurred (SlowDown) when calling"
        " the PutObject operation (Status Code: 503)"
    )
    assert best(bigquery) == "rate_limited"
    assert best(s3) == "rate_limited"
    damped = [v for v in explain(None, bigquery).votes if v.reason.startswith("HTTP 403")]
    assert damped and all("outweighed" in v.reason for v in damped)


def test_a_connection_error_caused_by_a_missing_socket_file_is_configuration() -> None:
    text = (
        "requests.exceptions.ConnectionError: ('Connection aborted.', "
        "FileNotFoundError(2, 'No such file or directory'))"
    )
    assert best(text) == "config_error"


def test_dagrun_timeout_skipping_a_running_task_is_a_timeout_not_a_lost_worker() -> None:
    text = (
        "WARNING - State of this instance has been externally set to skipped. Terminating instance.\n"
        "INFO - Sending Signals.SIGTERM to group 321\n"
        "ERROR - Received SIGTERM. Terminating subprocesses.\n"
    )
    assert best(text) == "timeout"


def test_rbac_denial_of_the_default_service_account_is_a_missing_setting() -> None:
    default = 'pods is forbidden: User "system:serviceaccount:jobs:default" cannot create resource "pods"'
    named = 'pods is forbidden: User "system:serviceaccount:jobs:runner" cannot create resource "pods"'
    assert best(default) == "config_error"
    assert best(named) == "auth_failure"


def test_sigkill_is_memory_and_sigterm_is_a_lost_worker() -> None:
    assert best("Task exited with return code Negsignal.SIGKILL") == "resource_exhausted"
    assert best("command terminated with exit code 143") == "worker_lost"


# ---- chains: the root cause counts most -------------------------------------------------------------
def test_the_root_cause_outweighs_a_specific_wrapper() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "/usr/local/lib/python3.11/site-packages/psycopg2/extensions.py", line 1, in execute\n'
        "psycopg2.errors.DeadlockDetected: deadlock detected\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        "Traceback (most recent call last):\n"
        '  File "/opt/airflow/dags/load.py", line 20, in load\n'
        "ValueError: load failed for partition 2024-05-01\n"
    )
    evidence = explain(None, text)
    assert evidence.best[0] == "db_contention"
    assert any("root cause" in r for r in evidence.reasons("db_contention"))


def test_a_generic_wrapper_adds_nothing_of_its_own() -> None:
    text = "airflow.exceptions.AirflowException: Task failed"
    assert explain(None, text).scores == {}


# ---- the contract of the scores ----------------------------------------------------------------------
def test_scores_are_normalised_and_explained() -> None:
    text = "psycopg2.errors.SerializationFailure: could not serialize access due to concurrent update (SQLSTATE 40001)"
    evidence = explain(parse(text), text)
    assert math.isclose(sum(evidence.scores.values()), 1.0)
    assert set(evidence.scores) <= set(ERROR_CLASSES)
    cls, share = evidence.best
    assert cls == "db_contention" and share > 0.8
    reasons = evidence.reasons("db_contention")
    assert any("SQLSTATE 40001" in r for r in reasons) and any("SerializationFailure" in r for r in reasons)
    assert score_classes(None, text) == evidence.scores


def test_nothing_known_gives_no_scores_and_no_certainty() -> None:
    evidence = explain(None, "the job did not finish")
    assert evidence.scores == {} and evidence.certainty() == 0.0 and evidence.best == (None, 0.0)


def test_certainty_grows_with_evidence() -> None:
    weak = explain(None, "something was not found")
    strong = explain(None, "psycopg2.errors.DeadlockDetected: deadlock detected (SQLSTATE 40P01)")
    assert 0 < weak.certainty() < 0.5 < strong.certainty() < 1


def test_runbook_signals_count_but_weakly() -> None:
    books = load_runbooks()
    text = "the vendor answered: Retry-After: 120"  # a rate-limit signal and nothing structured
    with_books = explain(None, text, books)
    assert with_books.best[0] == "rate_limited"
    assert any(v.kind == "signal" for v in with_books.votes)
    assert with_books.strength < 3.0  # less than one definitive fact


def test_scoring_never_raises_on_odd_text() -> None:
    for text in ("", "\x00\xff" * 1000, "(" * 100_000, "Forbidden " * 50_000):
        explain(None, text, load_runbooks())


def test_every_table_names_only_the_thirteen_classes() -> None:
    tables: list[Mapping[Any, Mapping[str, float]]] = [
        TYPE_WEIGHTS,
        QUALIFIED,
        SQLSTATE_EXACT,
        SQLSTATE_CLASS,
        MYSQL_ERRORS,
        HTTP_STATUS,
        ERRNO,
        SIGNALS,
        AWS_CODES,
        GRPC_STATUS,
        VENDOR_CODES,
        K8S_REASONS,
        SPARK_EVENTS,
        DBT_ERRORS,
        AIRFLOW_EVENTS,
    ]
    named = {cls for table in tables for weights in table.values() for cls in weights}
    named |= {cls for _, weights, _ in PHRASES for cls in weights}
    assert named == set(ERROR_CLASSES)
    for table in tables:
        for weights in table.values():
            assert weights and all(0 < w <= 3.0 for w in weights.values())
