"""Class scores from facts: what each library's documented errors mean, not what past lines said.

``explain(facts, text, runbooks)`` turns the structured facts of one failure (``facts.py``)
into votes for the 13 error classes. Each vote names the fact behind it, so a diagnosis can
say why. The knowledge is organised by where it comes from (each group below names its
source): exception class hierarchies (Python builtins, requests/urllib3/httpx, DB-API
drivers and SQLAlchemy, botocore, google.api_core, Snowflake, Databricks, Airflow, Spark/JVM,
dbt), SQLSTATE classes, HTTP statuses, errno, signals and exit codes, AWS error codes, gRPC
statuses, Kubernetes reasons, Spark/YARN exit statuses, and the fixed messages those systems
print. Runbook signals (regexes a deployment may add) count as the weakest evidence.

How votes combine, and why:
- the root cause of a chain counts most; each link outward counts 0.7 of the one inside it
  (``raise X from e`` / Java ``Caused by``: the wrapper says less than the cause);
- an exception's type outweighs words in its message: type votes go up to 3.0, message
  phrases mostly to 2.5, runbook signals 0.6;
- a service's own error code outranks the HTTP status it travels in (BigQuery answers
  ``rateLimitExceeded`` with 403, S3 ``SlowDown`` with 503): status votes that disagree with
  a specific code or message are damped;
- within a class, the strongest vote counts fully and further ones with diminishing weight
  (1, 1/2, 1/3, ...), so one fact seen through several channels does not swamp a different,
  single, specific fact.
``scores`` are the class totals normalised to sum to 1 (a confidence is the top share);
``strength`` is the raw total, for weighing these scores against retrieval.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from medic.diagnose.facts import Facts, RaisedException, parse

NET = "network_transient"
RATE = "rate_limited"
UP = "upstream_unavailable"
RES = "resource_exhausted"
TMO = "timeout"
LOST = "worker_lost"
DB = "db_contention"
AUTH = "auth_failure"
MISS = "missing_input"
DATA = "data_quality"
CODE = "code_bug"
DEP = "dependency_error"
CONF = "config_error"

Weights = Mapping[str, float]
VoteKind = Literal["type", "code", "status", "event", "phrase", "context", "signal"]

OUTWARD_DECAY = 0.7  # each link outward from the root cause
OUTSIDE_CHAIN = 0.3  # exceptions printed outside the final chain (earlier attempts)
OFF_CHAIN_CODE = 0.5  # codes and phrases found in the log but not in the final chain
STATUS_DAMPING = 0.35  # a carrier status that disagrees with a specific code or message
SPECIFIC = 2.5  # a vote this strong (code/event/phrase/type) is specific enough to damp statuses
RUNBOOK_SIGNAL_WEIGHT = 0.6
MAX_TEXT = 16_000  # the tail of the text scanned for phrases and runbook signals (plus the chain)


class _RunbookLike(Protocol):
    """What scoring needs of a runbook (``knowledge.Runbook`` fits)."""

    @property
    def error_class(self) -> str: ...

    @property
    def signals(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Vote:
    """One piece of evidence for one class: its weight and the fact it came from."""

    error_class: str
    weight: float
    reason: str
    kind: VoteKind


@dataclass(frozen=True)
class ClassEvidence:
    """Normalised class scores, raw totals, and the votes behind them."""

    scores: dict[str, float]
    raw: dict[str, float]
    votes: tuple[Vote, ...]

    @property
    def strength(self) -> float:
        """The raw total: about 3 for one definitive fact, under 1 for a stray runbook signal."""
        return sum(self.raw.values())

    @property
    def best(self) -> tuple[str | None, float]:
        if not self.scores:
            return None, 0.0
        cls = max(self.scores, key=lambda c: self.scores[c])
        return cls, self.scores[cls]

    def reasons(self, error_class: str, limit: int = 4) -> list[str]:
        """The strongest facts behind one class, as short strings."""
        own = sorted((v for v in self.votes if v.error_class == error_class), key=lambda v: -v.weight)
        out: list[str] = []
        for vote in own:
            if vote.reason not in out:
                out.append(vote.reason)
            if len(out) >= limit:
                break
        return out

    def certainty(self, half: float = 3.0) -> float:
        """0..1: how much evidence there is at all (``half`` raw weight gives 0.5)."""
        return self.strength / (self.strength + half) if self.strength > 0 else 0.0


def _same(names: Iterable[str], weights: Weights) -> dict[str, Weights]:
    """One meaning for several names (each gets its own copy)."""
    return {name: dict(weights) for name in names}


# ---- exception types ----------------------------------------------------------------------------
# Types that say nothing by themselves: wrappers whose message, code or cause decides.
GENERIC_TYPES = frozenset(
    {
        "Exception",
        "BaseException",
        "RuntimeError",
        "Error",
        "OSError",
        "IOError",
        "EnvironmentError",
        "AirflowException",
        "AirflowFailException",
        "AirflowRuntimeError",
        "SparkException",
        "Py4JJavaError",
        "Py4JError",
        "CalledProcessError",
        "SubprocessError",
        "ClientError",
        "BotoCoreError",
        "HTTPError",
        "HTTPStatusError",
        "RequestException",
        "DatabaseError",
        "OperationalError",
        "DBAPIError",
        "StatementError",
        "InternalError",
        "ApiException",
        "MaxRetryError",
        "WaiterError",
        "S3Exception",
        "AmazonS3Exception",
        "AmazonServiceException",
        "SdkClientException",
        "AwsServiceException",
        "PSQLException",
        "SQLException",
        "GoogleAPICallError",
        "GoogleAPIError",
        "DatabricksError",
        "DbtRuntimeError",
        "DbtDatabaseError",
        "DbtInternalError",
        "PapermillExecutionError",
        "ExecutionError",
        "QueryExecutionException",
        "StreamingQueryException",
        "AnalysisException",
        "TaskDeferralError",
        "Failure",
        "ExceptionGroup",
        "BaseExceptionGroup",
        "SystemExit",
    }
)

# Python builtins (docs.python.org/3/library/exceptions.html: the OSError subclasses map to errno;
# programming errors are LookupError/TypeError/NameError/AttributeError/SyntaxError).
_BUILTIN: dict[str, Weights] = {
    "ConnectionResetError": {NET: 3.0},
    "ConnectionAbortedError": {NET: 3.0},
    "BrokenPipeError": {NET: 3.0},
    "ConnectionError": {NET: 2.0},
    "TimeoutError": {TMO: 2.0, NET: 1.0},
    "MemoryError": {RES: 3.0},
    "FileNotFoundError": {MISS: 2.5},
    "NotADirectoryError": {MISS: 1.5, CODE: 1.0},
    "IsADirectoryError": {CODE: 1.5, MISS: 1.0},
    "PermissionError": {AUTH: 2.0, CONF: 1.0},
    "KeyError": {CODE: 2.5},
    "IndexError": {CODE: 2.5},
    "TypeError": {CODE: 3.0},
    "AttributeError": {CODE: 3.0},
    "NameError": {CODE: 3.0},
    "UnboundLocalError": {CODE: 3.0},
    "ZeroDivisionError": {CODE: 2.0, DATA: 1.0},
    "SyntaxError": {CODE: 3.0},
    "IndentationError": {CODE: 3.0},
    "TabError": {CODE: 3.0},
    "AssertionError": {CODE: 1.5, DATA: 1.0},
    "RecursionError": {CODE: 2.5},
    "NotImplementedError": {CODE: 2.5},
    "ValueError": {DATA: 1.0, CODE: 1.0},
    "UnicodeDecodeError": {DATA: 3.0},
    "UnicodeEncodeError": {DATA: 2.0, CODE: 1.0},
    "UnicodeError": {DATA: 2.5},
    "JSONDecodeError": {DATA: 2.0, UP: 0.5},
    "OverflowError": {DATA: 2.0},
    "ModuleNotFoundError": {DEP: 3.0},
    "ImportError": {DEP: 3.0},
    "EOFError": {NET: 1.0},
    "KeyboardInterrupt": {LOST: 1.0},
    "StopIteration": {CODE: 2.0},
    "LookupError": {CODE: 2.0},
    "gaierror": {NET: 3.0},  # socket.gaierror: getaddrinfo failed
    "herror": {NET: 2.0},
    "timeout": {TMO: 2.0, NET: 1.0},  # socket.timeout (an alias of TimeoutError since 3.10)
    "IncompleteRead": {NET: 3.0},  # http.client
    "RemoteDisconnected": {NET: 3.0},  # http.client: the server closed without answering
    "SSLEOFError": {NET: 3.0},  # ssl: the TLS stream was cut
    "SSLZeroReturnError": {NET: 2.0},
    "SSLCertVerificationError": {CONF: 3.0},
    "SSLError": {NET: 1.0, CONF: 1.0},
    "TimeoutExpired": {TMO: 3.0},  # subprocess.run(timeout=...)
    "CancelledError": {LOST: 1.0, TMO: 1.0},  # asyncio: the task was cancelled from outside
    "NoSectionError": {CONF: 3.0},  # configparser
    "NoOptionError": {CONF: 3.0},
    "InterpolationError": {CONF: 2.5},
    "BadZipFile": {DATA: 3.0},  # zipfile: a corrupt input archive
    "ReadError": {DATA: 1.5, NET: 1.0},  # tarfile.ReadError / httpx.ReadError
}
# requests (requests.exceptions), urllib3 (urllib3.exceptions), httpx, aiohttp: documented hierarchies.
_HTTP_CLIENTS: dict[str, Weights] = {
    "ConnectTimeout": {NET: 2.0, TMO: 1.0},  # requests/httpx: no connection within the connect timeout
    "ConnectTimeoutError": {NET: 2.0, TMO: 1.0},
    "ReadTimeout": {TMO: 2.0, NET: 1.0},  # the server took longer than the read timeout to answer
    "ReadTimeoutError": {TMO: 2.0, NET: 1.0},
    "WriteTimeout": {TMO: 2.0, NET: 1.0},
    "PoolTimeout": {DB: 1.0, TMO: 1.5},
    "Timeout": {TMO: 2.0, NET: 1.0},
    "ChunkedEncodingError": {NET: 3.0},  # the body stream broke mid-way
    "ContentDecodingError": {NET: 1.0, DATA: 1.0},
    "ProtocolError": {NET: 2.5},  # urllib3: "Connection aborted" / "Connection broken"
    "NewConnectionError": {NET: 1.0, UP: 1.0},  # errno decides (refused / unreachable)
    "NameResolutionError": {NET: 3.0},  # urllib3 2.x: DNS failed
    "ProxyError": {CONF: 1.5, NET: 1.0},
    "MissingSchema": {CONF: 3.0},  # requests: a URL without http(s)://, usually an unset setting
    "InvalidSchema": {CONF: 3.0},
    "InvalidURL": {CONF: 3.0},
    "InvalidHeader": {CONF: 2.0, CODE: 1.0},
    "URLRequired": {CONF: 3.0},
    "TooManyRedirects": {CONF: 1.5, UP: 1.0},
    "ConnectError": {NET: 2.0},  # httpx
    "WriteError": {NET: 2.0},
    "RemoteProtocolError": {NET: 3.0},  # httpx: server disconnected without sending a response
    "ClientConnectorError": {NET: 2.0},  # aiohttp
    "ServerDisconnectedError": {NET: 3.0},
    "ClientOSError": {NET: 2.0},
    "ClientPayloadError": {NET: 2.0},
    "ServerTimeoutError": {TMO: 2.0, NET: 1.0},
    "ConnectionClosed": {NET: 2.5},  # websockets
    "ConnectionClosedError": {NET: 3.0},  # botocore / websockets: closed before a valid response
}
# PEP 249 (DB-API 2.0) classes and SQLAlchemy (sqlalchemy.exc) wrappers: IntegrityError/DataError
# are about the data, ProgrammingError about the statement; OperationalError is decided by its message.
_DBAPI: dict[str, Weights] = {
    "IntegrityError": {DATA: 3.0},
    "DataError": {DATA: 3.0},
    "ProgrammingError": {CODE: 2.0, MISS: 0.5},
    "NotSupportedError": {CODE: 2.0},
    "InterfaceError": {NET: 1.5},
    "DisconnectionError": {NET: 2.5},
    "NoSuchTableError": {MISS: 2.5, CODE: 0.5},
    "NoSuchModuleError": {DEP: 2.5, CONF: 0.5},  # sqlalchemy: "Can't load plugin: sqlalchemy.dialects:x"
    "ArgumentError": {CONF: 2.0, CODE: 1.0},  # sqlalchemy: e.g. a malformed database URL
    "InvalidRequestError": {CODE: 2.0},
    "ResourceClosedError": {CODE: 2.0},
    "PendingRollbackError": {CODE: 1.5},
    "CompileError": {CODE: 3.0},
    "NoReferencedTableError": {CODE: 2.0},
    "UnboundExecutionError": {CODE: 2.0},
}
# psycopg2.errors / psycopg.errors: one class per SQLSTATE, named after its condition name
# (PostgreSQL Appendix A). The class name *is* the SQLSTATE; it is scored through that table.
PSYCOPG_SQLSTATE: dict[str, str] = {
    "DeadlockDetected": "40P01",
    "SerializationFailure": "40001",
    "TransactionRollback": "40000",
    "LockNotAvailable": "55P03",
    "ObjectInUse": "55006",
    "TooManyConnections": "53300",
    "DiskFull": "53100",
    "OutOfMemory": "53200",
    "ConfigurationLimitExceeded": "53400",
    "InsufficientResources": "53000",
    "QueryCanceled": "57014",
    "QueryCanceledError": "57014",
    "AdminShutdown": "57P01",
    "CrashShutdown": "57P02",
    "CannotConnectNow": "57P03",
    "IdleSessionTimeout": "57P05",
    "InvalidPassword": "28P01",
    "InvalidAuthorizationSpecification": "28000",
    "InsufficientPrivilege": "42501",
    "UndefinedTable": "42P01",
    "UndefinedColumn": "42703",
    "UndefinedFunction": "42883",
    "UndefinedObject": "42704",
    "DuplicateTable": "42P07",
    "DuplicateObject": "42710",
    "AmbiguousColumn": "42702",
    "DatatypeMismatch": "42804",
    "InvalidSchemaName": "3F000",
    "InvalidCatalogName": "3D000",
    "InvalidTextRepresentation": "22P02",
    "NumericValueOutOfRange": "22003",
    "StringDataRightTruncation": "22001",
    "InvalidDatetimeFormat": "22007",
    "DatetimeFieldOverflow": "22008",
    "DivisionByZero": "22012",
    "CharacterNotInRepertoire": "22021",
    "UntranslatableCharacter": "22P05",
    "BadCopyFileFormat": "22P04",
    "InvalidParameterValue": "22023",
    "UniqueViolation": "23505",
    "NotNullViolation": "23502",
    "ForeignKeyViolation": "23503",
    "CheckViolation": "23514",
    "ExclusionViolation": "23P01",
    "ConnectionException": "08000",
    "ConnectionFailure": "08006",
    "SqlclientUnableToEstablishSqlconnection": "08001",
    "ProtocolViolation": "08P01",
    "InFailedSqlTransaction": "25P02",
    "IdleInTransactionSessionTimeout": "25P03",
    "ReadOnlySqlTransaction": "25006",
    "FeatureNotSupported": "0A000",
    "DataCorrupted": "XX001",
    "IndexCorrupted": "XX002",
    "RaiseException": "P0001",
}
# JVM: java.lang / java.net / java.sql / Hadoop / Spark / Delta Lake / Iceberg class semantics.
_JVM: dict[str, Weights] = {
    "OutOfMemoryError": {RES: 3.0},  # java.lang, also torch.OutOfMemoryError
    "NullPointerException": {CODE: 3.0},
    "ClassCastException": {CODE: 3.0},
    "ArrayIndexOutOfBoundsException": {CODE: 2.5},
    "IllegalArgumentException": {CODE: 1.5, CONF: 0.5},
    "IllegalStateException": {CODE: 1.5},
    "UnsupportedOperationException": {CODE: 2.0},
    "NumberFormatException": {DATA: 3.0},
    "DateTimeParseException": {DATA: 3.0},
    "ArithmeticException": {CODE: 1.0, DATA: 1.0},
    "ClassNotFoundException": {DEP: 3.0},
    "NoClassDefFoundError": {DEP: 3.0},
    "NoSuchMethodError": {DEP: 3.0},  # a binary incompatibility between two jars
    "NoSuchFieldError": {DEP: 3.0},
    "AbstractMethodError": {DEP: 3.0},
    "IncompatibleClassChangeError": {DEP: 3.0},
    "UnsatisfiedLinkError": {DEP: 3.0},
    "ConnectException": {UP: 1.0, NET: 1.0},  # java.net: errno decides
    "SocketTimeoutException": {TMO: 2.0, NET: 1.0},
    "SocketException": {NET: 2.0},
    "UnknownHostException": {NET: 2.0, CONF: 1.0},
    "EOFException": {NET: 1.5, DATA: 1.0},
    "FileNotFoundException": {MISS: 2.5},  # java.io / org.apache.hadoop
    "FileAlreadyExistsException": {CODE: 1.5, DB: 1.0},
    "AccessControlException": {AUTH: 3.0},  # hadoop / java.security
    "AccessDeniedException": {AUTH: 3.0},  # java.nio.file and AWS
    "SQLTimeoutException": {TMO: 2.5},
    "SQLTransientConnectionException": {DB: 2.5, NET: 0.5},  # HikariCP: no pooled connection in time
    "SQLRecoverableException": {NET: 1.5},
    "SQLNonTransientConnectionException": {NET: 1.0, UP: 1.0},
    "SQLSyntaxErrorException": {CODE: 3.0},
    "SQLIntegrityConstraintViolationException": {DATA: 3.0},
    "SQLDataException": {DATA: 3.0},
    "SQLInvalidAuthorizationSpecException": {AUTH: 3.0},
    "SQLTransactionRollbackException": {DB: 3.0},
    "ParseException": {CODE: 3.0},  # Spark SQL parser
    "SparkOutOfMemoryError": {RES: 3.0},
    "FetchFailedException": {LOST: 2.0},
    "MetadataFetchFailedException": {LOST: 2.0},
    "ExecutorLostFailure": {LOST: 2.5},
    "ConcurrentAppendException": {DB: 3.0},  # Delta Lake optimistic concurrency conflicts
    "ConcurrentDeleteReadException": {DB: 3.0},
    "ConcurrentDeleteDeleteException": {DB: 3.0},
    "ConcurrentTransactionException": {DB: 3.0},
    "MetadataChangedException": {DB: 3.0},
    "ProtocolChangedException": {DB: 2.5},
    "CommitFailedException": {DB: 2.5},  # Iceberg: a concurrent commit won
    "CommitStateUnknownException": {NET: 1.0, UP: 1.0},
    "TimeoutException": {TMO: 2.5},  # java.util.concurrent
    "InterruptedException": {LOST: 1.0},
}
# botocore.exceptions (non-ClientError classes) and AWS SDK client-side errors.
_BOTOCORE: dict[str, Weights] = {
    "NoCredentialsError": {AUTH: 2.0, CONF: 1.5},
    "PartialCredentialsError": {CONF: 2.5, AUTH: 1.0},
    "CredentialRetrievalError": {AUTH: 2.5},
    "NoRegionError": {CONF: 3.0},
    "InvalidRegionError": {CONF: 3.0},
    "ProfileNotFound": {CONF: 3.0},
    "EndpointConnectionError": {NET: 2.0, CONF: 1.0},
    "ParamValidationError": {CODE: 3.0},  # botocore validates request parameters client-side
    "UnknownServiceError": {DEP: 2.0, CONF: 1.0},
    "DataNotFoundError": {DEP: 2.0},
    "UnauthorizedSSOTokenError": {AUTH: 3.0},
    "SSOTokenLoadError": {AUTH: 3.0},
    "TokenRetrievalError": {AUTH: 3.0},
}
# google.api_core.exceptions (each class is one HTTP status / gRPC code) and the Databricks SDK
# (databricks.sdk.errors.platform, named after its error codes). HTTP-status classes are carriers.
_GOOGLE_STATUS_TYPES: dict[str, Weights] = {
    "TooManyRequests": {RATE: 3.0},
    "InternalServerError": {UP: 2.5},
    "BadGateway": {UP: 3.0},
    "ServiceUnavailable": {UP: 3.0},
    "GatewayTimeout": {TMO: 1.5, UP: 1.5},
    "Forbidden": {AUTH: 3.0},
    "Unauthorized": {AUTH: 3.0},
    "NotFound": {MISS: 2.5, CONF: 0.5},
    "BadRequest": {CODE: 1.0, DATA: 1.0},
    "Conflict": {DB: 1.0, CODE: 1.0},
    "MethodNotAllowed": {CODE: 2.0},
    "PreconditionFailed": {DB: 1.0, CODE: 1.0},
}
_GRPC_TYPES: dict[str, Weights] = {
    "ResourceExhausted": {RATE: 2.5, RES: 1.0},
    "DeadlineExceeded": {TMO: 3.0},
    "RetryError": {TMO: 2.0, NET: 0.5},  # google.api_core.retry: the retry deadline ran out
    "PermissionDenied": {AUTH: 3.0},
    "Unauthenticated": {AUTH: 3.0},
    "Aborted": {DB: 2.5},
    "Cancelled": {LOST: 1.0, TMO: 0.5},
    "FailedPrecondition": {CONF: 1.0, CODE: 1.0},
    "InvalidArgument": {CODE: 2.0, DATA: 1.0},
    "AlreadyExists": {CODE: 1.5},
    "OutOfRange": {DATA: 1.5, CODE: 1.0},
    "DataLoss": {DATA: 2.0},
    "MethodNotImplemented": {DEP: 1.0, CODE: 1.0},
    "TemporarilyUnavailable": {UP: 3.0},  # databricks
    "RequestLimitExceeded": {RATE: 3.0},  # databricks
    "ResourceDoesNotExist": {MISS: 2.0, CONF: 1.0},  # databricks
    "InvalidParameterValue": {CONF: 1.5, CODE: 1.5},  # databricks
    "ResourceConflict": {DB: 1.5},  # databricks
    "RefreshError": {AUTH: 3.0},  # google.auth: the token could not be refreshed
    "DefaultCredentialsError": {AUTH: 2.0, CONF: 1.5},  # google.auth: no credentials found
    "TransportError": {NET: 2.0},  # google.auth
}
# snowflake.connector.errors (snowflake-connector-python errors.py: one class per HTTP status,
# DB-API classes otherwise), and the Snowflake/Databricks HTTP error classes.
_SNOWFLAKE: dict[str, Weights] = {
    "ServiceUnavailableError": {UP: 3.0},
    "BadGatewayError": {UP: 3.0},
    "GatewayTimeoutError": {TMO: 1.5, UP: 1.5},
    "InternalServerError": {UP: 2.5},
    "ForbiddenError": {AUTH: 3.0},
    "RequestTimeoutError": {TMO: 2.5},
    "OtherHTTPRetryableError": {UP: 2.0},
    "MissingDependencyError": {DEP: 3.0},
    "BadRequest": {CODE: 1.0, DATA: 1.0},
}
# Airflow (airflow.exceptions / airflow.sdk.exceptions), Celery/billiard, papermill, Kubernetes pod operator.
_AIRFLOW: dict[str, Weights] = {
    "AirflowTaskTimeout": {TMO: 3.0},
    "AirflowSensorTimeout": {TMO: 2.0, MISS: 1.0},
    "AirflowTaskTerminated": {LOST: 3.0},
    "AirflowNotFoundException": {CONF: 2.0, MISS: 1.0},
    "AirflowConfigException": {CONF: 3.0},
    "DagNotFound": {CONF: 1.5, CODE: 1.0},
    "TaskNotFound": {CODE: 1.5, CONF: 1.0},
    "DuplicateTaskIdFound": {CODE: 3.0},
    "AirflowDagCycleException": {CODE: 3.0},
    "AirflowClusterPolicyViolation": {CODE: 2.0, CONF: 1.0},
    "XComNotFound": {CODE: 1.5, MISS: 1.0},
    "PodLaunchFailedException": {CONF: 1.5, TMO: 1.0},
    "PodLaunchTimeoutException": {TMO: 1.5, CONF: 1.0},
    "WorkerLostError": {LOST: 3.0},  # billiard: the pool process died
    "SoftTimeLimitExceeded": {TMO: 3.0},  # celery
    "TimeLimitExceeded": {TMO: 3.0},
    "Terminated": {LOST: 2.0},
    "DeadKernelError": {RES: 1.5, LOST: 1.5},  # papermill/nbclient: the kernel died (often OOM)
    "CellTimeoutError": {TMO: 3.0},
}
# OAuth/JWT libraries (oauthlib.oauth2.rfc6749.errors, PyJWT, requests-oauthlib, msal).
_AUTH_LIBS: dict[str, Weights] = {
    **_same(
        (
            "TokenExpiredError",
            "InvalidGrantError",
            "InvalidClientError",
            "UnauthorizedClientError",
            "MissingTokenError",
            "InvalidTokenError",
            "ExpiredSignatureError",
            "InvalidSignatureError",
            "AuthenticationError",
            "AuthenticationFailed",
            "AuthenticationException",
            "ClientAuthenticationError",  # azure-core
            "InvalidCredentialsError",
            "CredentialUnavailableError",  # azure-identity
            "LoginFailed",
        ),
        {AUTH: 3.0},
    ),
    "CommunicationsException": {NET: 2.5},  # MySQL Connector/J: communications link failure
    "ServerNotFoundError": {NET: 2.0, CONF: 1.0},  # httplib2
}
# dbt-core (dbt.exceptions / dbt_common.exceptions) and pandas/pyarrow/numpy/validation libraries.
_DATA_TOOLS: dict[str, Weights] = {
    "CompilationError": {CODE: 2.5},
    "DbtCompilationError": {CODE: 2.5},
    "ParsingError": {CODE: 2.5},
    "DependencyError": {DEP: 3.0},
    "DbtDependencyError": {DEP: 3.0},
    "DbtProjectError": {CONF: 2.5},
    "DbtProfileError": {CONF: 3.0},
    "ParserError": {DATA: 3.0},  # pandas: malformed CSV
    "EmptyDataError": {MISS: 2.0, DATA: 1.0},  # pandas: no columns to parse (an empty file)
    "ArrowInvalid": {DATA: 2.5, CODE: 0.5},
    "ArrowTypeError": {DATA: 2.0, CODE: 1.0},
    "ArrowNotImplementedError": {CODE: 2.0},
    "ArrowMemoryError": {RES: 3.0},
    "ArrowCapacityError": {RES: 1.5, DATA: 1.0},
    "_ArrayMemoryError": {RES: 3.0},  # numpy: Unable to allocate
    "OutOfBoundsDatetime": {DATA: 3.0},
    "IntCastingNaNError": {DATA: 3.0},
    "MergeError": {DATA: 1.5, CODE: 1.0},
    "SchemaError": {DATA: 3.0},  # pandera
    "SchemaErrors": {DATA: 3.0},
    "ValidationError": {DATA: 2.0, CODE: 0.5, CONF: 0.5},  # pydantic / jsonschema / marshmallow
    "DistributionNotFound": {DEP: 3.0},  # pkg_resources
    "VersionConflict": {DEP: 3.0},
    "ContextualVersionConflict": {DEP: 3.0},
    "PackageNotFoundError": {DEP: 3.0},  # importlib.metadata
    "ResolutionImpossible": {DEP: 3.0},  # pip
    "UndefinedError": {CODE: 2.5},  # jinja2
    "TemplateSyntaxError": {CODE: 3.0},
    "TemplateNotFound": {CODE: 1.5, MISS: 1.0},
    "ImproperlyConfigured": {CONF: 3.0},  # django
    "CUDAOutOfMemoryError": {RES: 3.0},
}
TYPE_WEIGHTS: dict[str, Weights] = {
    **_AUTH_LIBS,
    **_DATA_TOOLS,
    **_AIRFLOW,
    **_SNOWFLAKE,
    **_GRPC_TYPES,
    **_GOOGLE_STATUS_TYPES,
    **_BOTOCORE,
    **_JVM,
    **_DBAPI,
    **_HTTP_CLIENTS,
    **_BUILTIN,
}
STATUS_TYPES = frozenset(_GOOGLE_STATUS_TYPES) | {"BadRequest", "InternalServerError"}
# Fully qualified names whose meaning differs from the short name's.
QUALIFIED: dict[str, Weights] = {
    "sqlalchemy.exc.TimeoutError": {DB: 3.0},  # QueuePool limit reached: no free pooled connection
    "requests.exceptions.ConnectionError": {NET: 1.0},  # wraps any connection failure: its cause decides
    "botocore.exceptions.ReadTimeoutError": {TMO: 2.0, NET: 1.0},
    "botocore.exceptions.ConnectTimeoutError": {NET: 2.5, TMO: 0.5},
    "snowflake.connector.errors.OperationalError": {NET: 1.5},
    "torch.OutOfMemoryError": {RES: 3.0},
    "torch.cuda.OutOfMemoryError": {RES: 3.0},
    "concurrent.futures.TimeoutError": {TMO: 2.5},
    "asyncio.TimeoutError": {TMO: 2.5},
    "asyncio.exceptions.TimeoutError": {TMO: 2.5},
    "celery.exceptions.TimeoutError": {TMO: 2.5},
    "redis.exceptions.ConnectionError": {NET: 2.0, UP: 1.0},
    "redis.exceptions.TimeoutError": {TMO: 1.5, NET: 1.5},
    "kombu.exceptions.OperationalError": {NET: 1.5, UP: 1.0},
    "pymongo.errors.ServerSelectionTimeoutError": {UP: 2.0, NET: 1.0},
    "pymongo.errors.AutoReconnect": {NET: 2.5},
}

# ---- SQLSTATE (PostgreSQL Appendix A "Error Codes"; the SQL standard's classes) ---------------------
SQLSTATE_EXACT: dict[str, Weights] = {
    "40001": {DB: 3.0},  # serialization_failure
    "40P01": {DB: 3.0},  # deadlock_detected
    "40003": {NET: 1.5},  # statement_completion_unknown
    "55P03": {DB: 3.0},  # lock_not_available (lock_timeout)
    "55006": {DB: 2.0},  # object_in_use
    "53300": {DB: 3.0},  # too_many_connections: the server's slots are taken by concurrent clients
    "53100": {RES: 3.0},  # disk_full
    "53200": {RES: 3.0},  # out_of_memory
    "53400": {RES: 2.0, CONF: 1.0},  # configuration_limit_exceeded
    "57014": {TMO: 2.5},  # query_canceled: statement_timeout or a cancel request
    "57P01": {UP: 3.0},  # admin_shutdown
    "57P02": {UP: 3.0},  # crash_shutdown
    "57P03": {UP: 3.0},  # cannot_connect_now (starting up / recovery)
    "57P04": {MISS: 1.0, CONF: 1.0},  # database_dropped
    "57P05": {TMO: 1.5, NET: 1.0},  # idle_session_timeout
    "42501": {AUTH: 3.0},  # insufficient_privilege
    "42P01": {MISS: 2.0, CODE: 1.0},  # undefined_table: not built yet, or a wrong name
    "42704": {MISS: 1.0, CODE: 1.5},  # undefined_object
    "42703": {CODE: 2.0, DATA: 1.0},  # undefined_column: a wrong name, or the schema changed
    "42601": {CODE: 3.0},  # syntax_error
    "42883": {CODE: 2.5, DEP: 0.5},  # undefined_function (or an extension not installed)
    "42804": {CODE: 2.5},  # datatype_mismatch
    "22012": {DATA: 2.0, CODE: 1.0},  # division_by_zero
    "25P02": {CODE: 1.0},  # in_failed_sql_transaction: an earlier statement failed
    "25P03": {TMO: 2.0},  # idle_in_transaction_session_timeout
    "25006": {CONF: 2.0},  # read_only_sql_transaction: writing to a replica
    "3D000": {CONF: 2.5, MISS: 0.5},  # invalid_catalog_name: the database named in the connection
    "3F000": {MISS: 1.5, CONF: 1.0},  # invalid_schema_name
    "HYT00": {TMO: 2.5},  # ODBC: timeout expired
    "42S02": {MISS: 2.5, CODE: 0.5},  # ODBC: base table or view not found
    "42S22": {CODE: 2.0, DATA: 1.0},  # ODBC: column not found
    "42S01": {CODE: 2.0},  # ODBC: base table or view already exists
    "08S01": {NET: 2.5},  # ODBC: communication link failure
    "HYT01": {NET: 1.5, TMO: 1.0},  # ODBC: connection timeout expired
}
SQLSTATE_CLASS: dict[str, Weights] = {
    "08": {NET: 2.0, UP: 1.0},  # connection exception
    "28": {AUTH: 3.0},  # invalid authorization specification
    "40": {DB: 3.0},  # transaction rollback
    "53": {RES: 2.5},  # insufficient resources
    "54": {CODE: 1.0, RES: 1.0},  # program limit exceeded
    "55": {DB: 1.0, CODE: 1.0},  # object not in prerequisite state
    "57": {UP: 2.0},  # operator intervention
    "42": {CODE: 2.5},  # syntax error or access rule violation
    "22": {DATA: 3.0},  # data exception
    "23": {DATA: 3.0},  # integrity constraint violation
    "0A": {CODE: 2.0},  # feature not supported
    "58": {RES: 1.0, UP: 1.0},  # system error (I/O)
    "XX": {UP: 1.5},  # internal error
}
# MySQL server/client error numbers (MySQL reference manual, "Error Messages").
MYSQL_ERRORS: dict[str, Weights] = {
    "1213": {DB: 3.0},  # ER_LOCK_DEADLOCK
    "1205": {DB: 3.0},  # ER_LOCK_WAIT_TIMEOUT
    "1040": {DB: 2.5},  # ER_CON_COUNT_ERROR: too many connections
    "2006": {NET: 2.5},  # CR_SERVER_GONE_ERROR
    "2013": {NET: 2.5},  # CR_SERVER_LOST
    "2003": {UP: 2.0, NET: 1.0},  # CR_CONN_HOST_ERROR: can't connect
    "2005": {NET: 1.5, CONF: 1.5},  # CR_UNKNOWN_HOST
    "1045": {AUTH: 3.0},  # ER_ACCESS_DENIED_ERROR
    "1044": {AUTH: 3.0},  # ER_DBACCESS_DENIED_ERROR
    "1142": {AUTH: 3.0},  # ER_TABLEACCESS_DENIED_ERROR
    "1146": {MISS: 2.5, CODE: 0.5},  # ER_NO_SUCH_TABLE
    "1049": {CONF: 2.5},  # ER_BAD_DB_ERROR
    "1064": {CODE: 3.0},  # ER_PARSE_ERROR
    "1054": {CODE: 2.0, DATA: 1.0},  # ER_BAD_FIELD_ERROR
    "1062": {DATA: 3.0},  # ER_DUP_ENTRY
    "1366": {DATA: 3.0},  # ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
    "1406": {DATA: 3.0},  # ER_DATA_TOO_LONG
    "1264": {DATA: 3.0},  # ER_WARN_DATA_OUT_OF_RANGE
    "1048": {DATA: 3.0},  # ER_BAD_NULL_ERROR
    "1452": {DATA: 3.0},  # ER_NO_REFERENCED_ROW_2
    "1114": {RES: 2.5},  # ER_RECORD_FILE_FULL
    "1041": {RES: 2.5},  # ER_OUT_OF_RESOURCES
    "1021": {RES: 3.0},  # ER_DISK_FULL
    "1206": {RES: 3.0},  # ER_LOCK_TABLE_FULL: the lock table does not fit the buffer pool
    "1203": {DB: 2.5},  # ER_TOO_MANY_USER_CONNECTIONS
    "1317": {TMO: 2.0},  # ER_QUERY_INTERRUPTED
    "3024": {TMO: 3.0},  # ER_QUERY_TIMEOUT: max_execution_time exceeded
    "1614": {DB: 2.0},  # ER_XA_RBDEADLOCK
}

# ---- HTTP status (RFC 9110; 429 RFC 6585) ---------------------------------------------------------
HTTP_STATUS: dict[int, Weights] = {
    400: {CODE: 1.0, DATA: 0.5, CONF: 0.5},
    401: {AUTH: 3.0},
    403: {AUTH: 3.0},
    404: {MISS: 2.5, CONF: 0.5},
    405: {CODE: 2.0},
    407: {CONF: 2.0, AUTH: 1.0},
    408: {TMO: 2.5},
    409: {DB: 1.0, CODE: 1.0},
    410: {MISS: 2.0},
    413: {DATA: 1.0, RES: 1.0},
    422: {DATA: 2.0, CODE: 0.5},
    429: {RATE: 3.0},
    500: {UP: 2.5},
    502: {UP: 3.0},
    503: {UP: 3.0},
    504: {TMO: 1.5, UP: 1.5},
    507: {RES: 2.0},
    509: {RATE: 2.0},
}

# ---- errno (errno(3), glibc; getaddrinfo(3) for EAI_*) ----------------------------------------------
ERRNO: dict[str, Weights] = {
    "ECONNRESET": {NET: 2.5},
    "EPIPE": {NET: 2.5},
    "ECONNABORTED": {NET: 2.5},
    "ENOTCONN": {NET: 2.0},
    "ETIMEDOUT": {NET: 2.0, TMO: 0.5},  # the TCP connect/keepalive timer, not the task's limit
    "EHOSTUNREACH": {NET: 2.0, CONF: 0.5},
    "ENETUNREACH": {NET: 2.0, CONF: 0.5},
    "EHOSTDOWN": {UP: 1.5, NET: 1.0},
    "EAI_AGAIN": {NET: 2.5},  # temporary DNS failure
    "EAI_NONAME": {NET: 1.5, CONF: 1.0},  # the name does not resolve: flaky DNS or a wrong host
    "EAI_NODATA": {NET: 1.0, CONF: 1.0},
    "ENOSPC": {RES: 3.0},
    "EDQUOT": {RES: 3.0},
    "ENOMEM": {RES: 3.0},
    "EMFILE": {RES: 2.5},
    "ENFILE": {RES: 2.5},
    "ENOENT": {MISS: 1.5},
    "EACCES": {AUTH: 2.0, CONF: 0.5},
    "EPERM": {AUTH: 1.5, CONF: 0.5},
    "EROFS": {CONF: 2.0},
    "EAGAIN": {NET: 1.0, RES: 0.5},
    "EIO": {RES: 1.0, UP: 0.5},
    "EADDRINUSE": {CONF: 1.5, LOST: 0.5},
}

# ---- signals and exit codes (signal(7); shells report 128+n; Python's returncode is -n) --------------
SIGNALS: dict[str, Weights] = {
    # SIGKILL with no SIGTERM first is what the kernel OOM killer and cgroup memory limits send
    # (Kubernetes reports it as exit code 137 / OOMKilled).
    "SIGKILL": {RES: 2.5, LOST: 0.5},
    # SIGTERM is sent by kubelet on eviction/deletion, by Celery on warm shutdown, and by Airflow
    # when the task instance's state is changed from outside or the run times out.
    "SIGTERM": {LOST: 2.0, TMO: 0.5},
    "SIGSEGV": {DEP: 1.5, CODE: 1.0},  # a native extension crashed: usually a binary mismatch
    "SIGBUS": {RES: 1.0, DEP: 1.0},
    "SIGABRT": {DEP: 1.0, CODE: 1.0},
    "SIGINT": {LOST: 1.0},
    "SIGHUP": {LOST: 1.5},
}
EXIT_CODES: dict[int, Weights] = {
    127: {DEP: 3.0},  # POSIX shell: command not found
    126: {DEP: 1.5, AUTH: 1.0},  # found but not executable
}

# ---- AWS error codes (AWS API references: "Common Errors", S3 "Error responses", STS, DynamoDB,
# Glue, EMR, Lambda, Kinesis); botocore puts them in ClientError: "An error occurred (Code)". ----------
AWS_CODES: dict[str, Weights] = {
    **_same(
        (
            "Throttling",
            "ThrottlingException",
            "ThrottledException",
            "RequestLimitExceeded",
            "TooManyRequestsException",
            "SlowDown",
            "ProvisionedThroughputExceededException",
            "RequestThrottled",
            "RequestThrottledException",
            "BandwidthLimitExceeded",
            "PriorRequestNotComplete",
            "EC2ThrottledException",
            "TransactionInProgressException",
            "RequestLimitExceededException",
        ),
        {RATE: 3.0},
    ),
    "LimitExceededException": {RATE: 2.0, RES: 1.0},
    "ServiceQuotaExceededException": {RATE: 2.0, RES: 1.0},
    "QuotaExceeded": {RATE: 2.0, RES: 1.0},
    "ConcurrentRunsExceededException": {RATE: 2.0, DB: 0.5},  # Glue: max concurrent runs of a job
    **_same(
        (
            "ServiceUnavailable",
            "ServiceUnavailableException",
            "InternalError",
            "InternalFailure",
            "InternalServerError",
            "InternalServiceError",
            "InternalServerException",
            "InternalServiceException",
            "ServiceException",
            "ServiceFailure",
            "Unavailable",
        ),
        {UP: 3.0},
    ),
    "InsufficientInstanceCapacity": {UP: 2.0, RES: 1.0},
    **_same(
        (
            "AccessDenied",
            "AccessDeniedException",
            "UnauthorizedOperation",
            "UnauthorizedAccess",
            "AuthFailure",
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "ExpiredTokenException",
            "TokenRefreshRequired",
            "InvalidAccessKeyId",
            "UnrecognizedClientException",
            "MissingAuthenticationToken",
            "IncompleteSignature",
            "InvalidToken",
            "AllAccessDisabled",
            "AccountProblem",
            "NotAuthorized",
            "NotAuthorizedException",
            "InvalidIdentityToken",
            "KMS.AccessDeniedException",
            "KMSAccessDeniedException",
            "InvalidSignatureException",
            "Forbidden",
            "Unauthorized",
        ),
        {AUTH: 3.0},
    ),
    "RequestExpired": {AUTH: 1.5, CONF: 1.5},  # clock skew or an old signature
    "OptInRequired": {CONF: 2.0, AUTH: 1.0},
    **_same(("NoSuchKey", "NoSuchUpload", "NotFound", "404"), {MISS: 3.0}),
    "NoSuchBucket": {MISS: 2.0, CONF: 1.0},
    "ResourceNotFoundException": {MISS: 2.0, CONF: 1.0},
    "EntityNotFoundException": {MISS: 2.0, CONF: 1.0},  # Glue: database/table/job
    "NoSuchEntity": {CONF: 2.0, MISS: 1.0},  # IAM
    "InvalidObjectState": {MISS: 1.5, CONF: 1.0},  # an archived (Glacier) object
    **_same(
        (
            "ValidationException",
            "ValidationError",
            "InvalidParameterValue",
            "InvalidParameterException",
            "InvalidParameterCombination",
            "InvalidInputException",
            "MalformedQueryString",
            "MissingParameter",
            "InvalidRequestException",
            "SerializationException",
            "InvalidArgument",
            "InvalidRequest",
        ),
        {CODE: 2.0, CONF: 1.0},
    ),
    **_same(
        ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "InvalidRegion"),
        {CONF: 3.0},  # S3: the bucket is in another region / needs another endpoint
    ),
    "RequestTimeout": {NET: 2.0, TMO: 1.0},  # S3: the socket was idle past the timeout
    "RequestTimeoutException": {TMO: 2.0, NET: 1.0},
    "ConcurrentModificationException": {DB: 2.5},
    "TransactionConflictException": {DB: 3.0},  # DynamoDB transactions
    "TransactionCanceledException": {DB: 2.0, DATA: 0.5},
    "ConditionalCheckFailedException": {DB: 1.5, DATA: 1.0},
    "ResourceInUseException": {DB: 1.5, CONF: 1.0},
    "EntityTooLarge": {DATA: 1.0, CODE: 1.0},
    "InvalidAccessKeyIdException": {AUTH: 3.0},
}

# ---- gRPC status codes (grpc.io "Status codes and their use"), Google API error reasons (BigQuery
# "Error messages" / Google JSON error format), Databricks REST error codes, Snowflake error numbers.
GRPC_STATUS: dict[str, Weights] = {
    "DEADLINE_EXCEEDED": {TMO: 3.0},
    "RESOURCE_EXHAUSTED": {RATE: 2.5, RES: 1.0},  # per-user quota / rate; sometimes memory
    "UNAVAILABLE": {UP: 2.5, NET: 1.0},  # "most likely a transient condition"
    "PERMISSION_DENIED": {AUTH: 3.0},
    "UNAUTHENTICATED": {AUTH: 3.0},
    "NOT_FOUND": {MISS: 2.5, CONF: 0.5},
    "ABORTED": {DB: 2.5},  # "typically due to a concurrency issue ... transaction abort"
    "INTERNAL": {UP: 2.5},
    "FAILED_PRECONDITION": {CONF: 1.0, CODE: 1.0},
    "INVALID_ARGUMENT": {CODE: 2.0, DATA: 1.0},
    "ALREADY_EXISTS": {CODE: 1.5},
    "OUT_OF_RANGE": {DATA: 1.5, CODE: 1.0},
    "UNIMPLEMENTED": {DEP: 1.5, CODE: 1.0},
    "DATA_LOSS": {DATA: 2.0, UP: 1.0},
    "CANCELLED": {LOST: 1.5, TMO: 0.5},
}
VENDOR_CODES: dict[str, Weights] = {
    # Google API reasons
    "rateLimitExceeded": {RATE: 3.0},
    "userRateLimitExceeded": {RATE: 3.0},
    "quotaExceeded": {RATE: 2.5, RES: 0.5},
    "concurrentLimitExceeded": {RATE: 2.5},
    "backendError": {UP: 3.0},
    "internalError": {UP: 3.0},
    "jobBackendError": {UP: 2.5},
    "jobInternalError": {UP: 2.5},
    "tableUnavailable": {UP: 2.5},
    "accessDenied": {AUTH: 3.0},
    "authError": {AUTH: 3.0},
    "blocked": {AUTH: 2.0},
    "notFound": {MISS: 3.0},
    "invalidQuery": {CODE: 3.0},
    "invalid": {DATA: 1.5, CODE: 1.5},
    "resourcesExceeded": {RES: 3.0},
    "responseTooLarge": {RES: 2.0, CODE: 1.0},
    "duplicate": {CODE: 1.5, DATA: 1.0},
    "resourceInUse": {DB: 2.0},
    "timeout": {TMO: 3.0},
    "stopped": {LOST: 1.5},
    "billingNotEnabled": {CONF: 2.0, AUTH: 1.0},
    # Databricks REST API error codes
    "TEMPORARILY_UNAVAILABLE": {UP: 3.0},
    "REQUEST_LIMIT_EXCEEDED": {RATE: 3.0},
    "RESOURCE_DOES_NOT_EXIST": {MISS: 2.0, CONF: 1.0},
    "INVALID_PARAMETER_VALUE": {CONF: 1.5, CODE: 1.5},
    "INTERNAL_ERROR": {UP: 2.5},
    "RESOURCE_CONFLICT": {DB: 1.5},
    "QUOTA_EXCEEDED": {RATE: 2.0, RES: 1.0},
    "CUSTOMER_UNAUTHORIZED": {AUTH: 3.0},
    "ENDPOINT_NOT_FOUND": {CONF: 2.0},
    "MALFORMED_REQUEST": {CODE: 2.0},
    "BAD_REQUEST": {CODE: 1.0, CONF: 1.0},
    "NOT_IMPLEMENTED": {CODE: 1.5},
    # Snowflake error numbers (docs.snowflake.com: driver and SQL error codes)
    "snowflake:390100": {AUTH: 3.0},  # incorrect username or password
    "snowflake:390144": {AUTH: 3.0},  # JWT token is invalid
    "snowflake:390114": {AUTH: 3.0},  # authentication token has expired
    "snowflake:390318": {AUTH: 3.0},  # OAuth access token expired
    "snowflake:390422": {AUTH: 2.0, CONF: 1.0},  # IP not allowed
    "snowflake:390189": {AUTH: 2.0, CONF: 1.0},  # role does not exist or not authorized
    "snowflake:000630": {TMO: 3.0},  # statement reached its statement or warehouse timeout
    "snowflake:000625": {DB: 3.0},  # lock waiters exceed the limit
    "snowflake:002003": {MISS: 2.0, AUTH: 1.0},  # object does not exist or not authorized
    "snowflake:001003": {CODE: 3.0},  # SQL compilation error: syntax error
    "snowflake:000904": {CODE: 2.5},  # invalid identifier
    "snowflake:100038": {DATA: 3.0},  # numeric value is not recognized
    "snowflake:100040": {DATA: 3.0},  # date is not recognized
    "snowflake:100035": {DATA: 3.0},  # timestamp is not recognized
    "snowflake:100069": {DATA: 3.0},  # error parsing JSON
    "snowflake:100183": {DATA: 3.0},  # can't parse
    "snowflake:000606": {CONF: 3.0},  # no active warehouse selected
    "snowflake:250003": {UP: 2.0, NET: 1.0},  # failed to get a response (HTTP 5xx)
}

# ---- Kubernetes reasons (kubelet container states, eviction manager, scheduler, Job controller) -----
K8S_REASONS: dict[str, Weights] = {
    "OOMKilled": {RES: 3.0},
    "EphemeralStorageLimit": {RES: 3.0},  # the pod's own disk use exceeded its limit
    "Evicted": {LOST: 2.5},  # the node reclaimed resources: the pod was removed
    "NodePressure": {LOST: 1.5, RES: 0.5},
    "DiskPressure": {LOST: 1.5, RES: 0.5},
    "MemoryPressure": {LOST: 1.5, RES: 0.5},
    "PIDPressure": {LOST: 1.5},
    "Preempted": {LOST: 3.0},
    "Preempting": {LOST: 3.0},
    "NodeLost": {LOST: 3.0},
    "NodeShutdown": {LOST: 3.0},
    "PodDeleted": {LOST: 2.0},
    "ContainerStatusUnknown": {LOST: 2.0},
    "ImagePullBackOff": {CONF: 2.5, DEP: 1.0},  # a wrong image name/tag or registry secret
    "ErrImagePull": {CONF: 2.5, DEP: 1.0},
    "ErrImageNeverPull": {CONF: 3.0},
    "InvalidImageName": {CONF: 3.0},
    "CreateContainerConfigError": {CONF: 3.0},  # a missing Secret or ConfigMap
    "CreateContainerError": {CONF: 2.0},
    "RunContainerError": {CONF: 2.0},
    "ContainerCannotRun": {CONF: 1.5, DEP: 1.0},
    "CrashLoopBackOff": {CODE: 1.0, CONF: 1.0},
    "DeadlineExceeded": {TMO: 3.0},  # activeDeadlineSeconds
    "Unschedulable": {RES: 2.0, TMO: 0.5},
    "FailedScheduling": {RES: 2.0, TMO: 0.5},
    "Insufficient": {RES: 2.0},
}

# ---- Spark / YARN (Spark monitoring docs, YARN ContainerExitStatus) -----------------------------------
SPARK_EVENTS: dict[str, Weights] = {
    "executor_lost": {LOST: 2.5},
    "yarn_memory_limit": {RES: 3.0},
    "container_killed": {LOST: 1.0},
    "container_lost": {LOST: 2.5},
    "executor_heartbeat": {LOST: 2.5},
    "shuffle_fetch_failed": {LOST: 2.0},  # the executor holding shuffle output is gone
    "spark_oom": {RES: 3.0},
    "max_result_size": {RES: 2.5, CONF: 0.5},
    "python_worker_crashed": {RES: 1.0, LOST: 1.0},
    "decommissioned": {LOST: 2.5},
    "yarn_exit_-100": {LOST: 3.0},  # ABORTED: released on a lost node
    "yarn_exit_-101": {RES: 2.0},  # DISKS_FAILED
    "yarn_exit_-102": {LOST: 3.0},  # PREEMPTED
    "yarn_exit_-103": {RES: 3.0},  # KILLED_EXCEEDED_VMEM
    "yarn_exit_-104": {RES: 3.0},  # KILLED_EXCEEDED_PMEM
    "yarn_exit_-105": {LOST: 2.0},  # KILLED_BY_APPMASTER
    "yarn_exit_-106": {LOST: 2.0},  # KILLED_BY_RESOURCEMANAGER
    "yarn_exit_-107": {LOST: 1.5},  # KILLED_AFTER_APP_COMPLETION
}

# ---- dbt (docs.getdbt.com "Debugging errors": the error kinds dbt prints) ------------------------------
DBT_ERRORS: dict[str, Weights] = {
    "compilation": {CODE: 2.5, DEP: 0.5},  # invalid Jinja, ref() to nothing, a macro missing
    "parsing": {CODE: 2.5},
    "dependency": {DEP: 3.0},
    "packages": {DEP: 2.0},
    "env_var_missing": {CONF: 3.0},
    "profile_missing": {CONF: 3.0},
    "test_failure": {DATA: 3.0},
    "node_not_found": {CODE: 2.0},
}

# ---- Airflow's own events (airflow task runner, scheduler, supervisor; docs "Zombie/Undead tasks",
# "Timeouts") ----------------------------------------------------------------------------------------
AIRFLOW_EVENTS: dict[str, Weights] = {
    "task_timeout": {TMO: 3.0},
    "sensor_timeout": {TMO: 2.0, MISS: 1.0},
    "dagrun_timeout": {TMO: 2.5},
    "killed_externally": {LOST: 3.0},
    "zombie": {LOST: 3.0},
    "heartbeat_lost": {LOST: 2.5},
    "process_signal": {LOST: 0.5},
    "sigterm_received": {LOST: 1.5},
    "externally_set": {LOST: 2.0},
    "externally_skipped": {TMO: 2.5},  # the scheduler skips unfinished tasks of a run past dagrun_timeout
    "connection_not_found": {CONF: 3.0},
    "variable_not_found": {CONF: 3.0},
    "config_exception": {CONF: 3.0},
    "broken_dag": {CODE: 2.0, DEP: 0.5},
    "pod_launch_failed": {CONF: 1.0, TMO: 1.0},
    "wait_exhausted": {TMO: 2.5},
}

# ---- fixed messages of libraries and services (each group names the system that prints it) ---------
_I = re.IGNORECASE
PHRASES: tuple[tuple[re.Pattern[str], Weights, str], ...] = tuple(
    (re.compile(pattern, flags), weights, label)
    for pattern, flags, weights, label in (
        # PostgreSQL server messages (src/backend, errmsg texts) and libpq client messages
        (r"deadlock detected", _I, {DB: 3.0}, "postgres: deadlock detected"),
        (r"\bdeadlock", _I, {DB: 2.5}, "deadlock (PostgreSQL, MySQL, SQL Server, Oracle ORA-00060)"),
        (r"waits for \w+Lock on \w+ \d+; blocked by process", _I, {DB: 3.0}, "postgres: deadlock report"),
        (r"could not serialize access", _I, {DB: 3.0}, "postgres: serialization failure"),
        (r"canceling statement due to statement timeout", _I, {TMO: 3.0}, "postgres: statement timeout"),
        (r"canceling statement due to lock timeout", _I, {DB: 3.0}, "postgres: lock timeout"),
        (r"canceling statement due to conflict with recovery", _I, {DB: 2.0, UP: 0.5}, "postgres: replica conflict"),
        (r"remaining connection slots are reserved|sorry, too many clients", _I, {DB: 3.0}, "postgres: no free slots"),
        (
            r"the database system is (?:starting up|shutting down|in recovery mode|not yet accepting)",
            _I,
            {UP: 3.0},
            "postgres: server not ready",
        ),
        (r"terminating connection due to administrator command", _I, {UP: 2.5}, "postgres: admin shutdown"),
        (r"server closed the connection unexpectedly", _I, {NET: 2.5}, "libpq: server closed the connection"),
        (
            r"SSL SYSCALL error: EOF detected|SSL connection has been closed unexpectedly",
            _I,
            {NET: 2.5},
            "libpq: TLS EOF",
        ),
        (r"could not translate host name", _I, {NET: 1.5, CONF: 1.0}, "libpq: DNS lookup failed"),
        (r"password authentication failed", _I, {AUTH: 3.0}, "postgres: password authentication failed"),
        (r"no pg_hba\.conf entry", _I, {AUTH: 2.0, CONF: 1.0}, "postgres: no pg_hba.conf entry"),
        (
            r"permission denied for (?:table|schema|relation|database|sequence|function|view)",
            _I,
            {AUTH: 3.0},
            "postgres: permission denied",
        ),
        (r"role \"[^\"\n]{1,100}\" does not exist", _I, {AUTH: 2.0, CONF: 1.5}, "postgres: role does not exist"),
        (
            r"database \"[^\"\n]{1,100}\" does not exist",
            _I,
            {CONF: 2.5, MISS: 0.5},
            "postgres: database does not exist",
        ),
        (
            r"relation \"[^\"\n]{1,200}\" does not exist",
            _I,
            {MISS: 2.0, CODE: 1.0},
            "postgres: relation does not exist",
        ),
        (r"column \"?[^\"\n]{1,200}\"? does not exist", _I, {CODE: 2.0, DATA: 1.0}, "sql: column does not exist"),
        (r"syntax error at or near", _I, {CODE: 3.0}, "sql: syntax error"),
        (r"invalid input syntax for", _I, {DATA: 3.0}, "postgres: invalid input syntax"),
        (r"value too long for type", _I, {DATA: 3.0}, "postgres: value too long"),
        (
            r"violates (?:not-null|unique|foreign key|check|exclusion) constraint",
            _I,
            {DATA: 3.0},
            "sql: constraint violated",
        ),
        (r"duplicate key value", _I, {DATA: 3.0}, "sql: duplicate key"),
        (r"invalid byte sequence for encoding", _I, {DATA: 3.0}, "postgres: invalid encoding"),
        (r"out of range for type|numeric field overflow", _I, {DATA: 3.0}, "sql: value out of range"),
        (r"could not extend file|could not write to file .{0,80}No space", _I, {RES: 3.0}, "postgres: disk full"),
        (r"out of shared memory", _I, {RES: 2.0, DB: 1.0}, "postgres: out of shared memory"),
        (r"Is the server running (?:on that host|locally)", _I, {UP: 1.0}, "libpq: server not reachable"),
        # MySQL server messages
        (r"Deadlock found when trying to get lock", 0, {DB: 3.0}, "mysql: deadlock"),
        (r"Lock wait timeout exceeded", _I, {DB: 3.0}, "mysql: lock wait timeout"),
        (r"MySQL server has gone away|Lost connection to MySQL server", _I, {NET: 2.5}, "mysql: connection lost"),
        (
            r"Communications link failure|The last packet (?:sent|successfully received)",
            _I,
            {NET: 2.5},
            "mysql connector/j: link failure",
        ),
        (r"Access denied for user", _I, {AUTH: 3.0}, "mysql: access denied"),
        (r"Table '[^'\n]{1,200}' doesn't exist", _I, {MISS: 2.5, CODE: 0.5}, "mysql: table doesn't exist"),
        # SQLAlchemy pool, SQLite, Redshift, Delta, BigQuery DML concurrency
        (r"QueuePool limit of size \d+ overflow \d+ reached", _I, {DB: 3.0}, "sqlalchemy: pool exhausted"),
        (r"database is locked", _I, {DB: 3.0}, "sqlite: database is locked"),
        (r"Serializable isolation violation", _I, {DB: 3.0}, "redshift: serializable isolation violation"),
        (
            r"due to concurrent update|concurrent transaction|conflicting (?:commit|transaction)",
            _I,
            {DB: 2.5},
            "concurrent update",
        ),
        (r"Connection is not available, request timed out after", _I, {DB: 3.0}, "hikaricp: pool exhausted"),
        # Snowflake messages
        (r"Incorrect username or password", _I, {AUTH: 3.0}, "snowflake: incorrect username or password"),
        (
            r"JWT token is invalid|Authentication token has expired|OAuth access token expired",
            _I,
            {AUTH: 3.0},
            "snowflake: token",
        ),
        (
            r"does not exist or not authorized",
            _I,
            {MISS: 2.0, AUTH: 1.0},
            "snowflake: object does not exist or not authorized",
        ),
        (r"SQL compilation error:\s*syntax error", _I, {CODE: 3.0}, "snowflake: syntax error"),
        (r"invalid identifier", _I, {CODE: 2.5}, "sql: invalid identifier"),
        (
            r"(?:Numeric|Date|Timestamp|Boolean) value '[^'\n]{0,200}' is not recognized",
            _I,
            {DATA: 3.0},
            "snowflake: value not recognized",
        ),
        (r"reached its statement or warehouse timeout", _I, {TMO: 3.0}, "snowflake: statement timeout"),
        (r"number of waiters for this lock exceeds", _I, {DB: 3.0}, "snowflake: lock waiters"),
        (r"No active warehouse selected", _I, {CONF: 3.0}, "snowflake: no warehouse"),
        # BigQuery error messages (cloud.google.com/bigquery/docs/error-messages)
        (r"Exceeded rate limits", _I, {RATE: 3.0}, "bigquery: exceeded rate limits"),
        (r"Quota exceeded|quotaExceeded|exceeded quota", _I, {RATE: 2.5, RES: 0.5}, "quota exceeded"),
        (
            r"Resources exceeded\b|Query exceeded resource limits",
            _I,
            {RES: 3.0},
            "bigquery: resources exceeded",
        ),
        (r"Not found: (?:Table|Dataset|Job|Project|Files?|URI)", 0, {MISS: 3.0}, "bigquery: not found"),
        (r"Access Denied: ", 0, {AUTH: 3.0}, "bigquery: access denied"),
        (r"Syntax error: ", 0, {CODE: 3.0}, "sql: syntax error"),
        (r"Unrecognized name: |No matching signature for", 0, {CODE: 2.5}, "bigquery: unknown name/signature"),
        (
            r"Error while reading (?:data|table)|Could not parse '[^'\n]{0,200}' as"
            r"|CSV table encountered too many errors",
            _I,
            {DATA: 3.0},
            "bigquery: bad input rows",
        ),
        (r"Provided Schema does not match", _I, {DATA: 2.5, CODE: 0.5}, "bigquery: schema mismatch"),
        (r"Job execution was cancelled: Job timed out", _I, {TMO: 3.0}, "bigquery: job timed out"),
        (
            r"Retrying (?:the job |the request )?may solve the problem"
            r"|encountered an (?:internal )?error during execution",
            _I,
            {UP: 3.0},
            "bigquery: backend error, retry may solve it",
        ),
        (r"Deadline of [\d.]+s exceeded", _I, {TMO: 2.5}, "google.api_core: retry deadline"),
        # AWS (botocore messages and service messages)
        (r"Rate exceeded", 0, {RATE: 3.0}, "aws: rate exceeded"),
        (r"reduce your request rate", _I, {RATE: 3.0}, "s3: reduce your request rate"),
        (r"Unable to locate credentials", _I, {AUTH: 2.0, CONF: 1.5}, "botocore: no credentials"),
        (r"security token included in the request is (?:expired|invalid)", _I, {AUTH: 3.0}, "aws: security token"),
        (r"is not authorized to perform", _I, {AUTH: 3.0}, "aws: not authorized to perform"),
        (
            r"token[_ ]expired|expired[_ ]token|invalid_grant|invalid_client|unauthorized_client",
            _I,
            {AUTH: 3.0},
            "oauth: token expired/invalid",
        ),
        (r"Could not connect to the endpoint URL", _I, {NET: 2.0, CONF: 1.0}, "botocore: endpoint unreachable"),
        (r"You must specify a region", _I, {CONF: 3.0}, "botocore: no region"),
        (r"The specified key does not exist", _I, {MISS: 3.0}, "s3: no such key"),
        (r"The specified bucket does not exist", _I, {MISS: 2.0, CONF: 1.0}, "s3: no such bucket"),
        (r"must be addressed using the specified endpoint", _I, {CONF: 3.0}, "s3: wrong endpoint"),
        (r"Max attempts exceeded", _I, {TMO: 2.0}, "botocore waiter: max attempts"),
        (r"Connection was closed before we received a valid response", _I, {NET: 3.0}, "botocore: connection closed"),
        (r"Read timeout on endpoint URL", _I, {TMO: 2.0, NET: 1.0}, "botocore: read timeout"),
        (r"Connect timeout on endpoint URL", _I, {NET: 2.5}, "botocore: connect timeout"),
        # HTTP APIs in general (RFC 6585 429, RFC 9110 5xx reason phrases, common API texts)
        (r"Too Many Requests", _I, {RATE: 3.0}, "http: too many requests"),
        (r"\bForbidden\b", 0, {AUTH: 2.0}, "http: Forbidden"),
        (r"\bUnauthori[sz]ed\b", 0, {AUTH: 2.0}, "http: Unauthorized"),
        (r"Internal Server Error", _I, {UP: 2.5}, "http: internal server error"),
        (
            r"(?:requests|calls|queries) per (?:second|minute|hour|day)"
            r"|(?:request|API|call) (?:limit|quota) (?:exceeded|reached)",
            _I,
            {RATE: 2.5},
            "request rate limit",
        ),
        (r"rate[ -]?limit(?:ed|ing)?\b|ratelimit", _I, {RATE: 2.5}, "rate limit"),
        (r"throttl", _I, {RATE: 2.5}, "throttled"),
        (r"Retry-After", _I, {RATE: 1.0}, "http: Retry-After"),
        (r"temporarily unavailable|try again later|please retry", _I, {UP: 2.0}, "temporarily unavailable"),
        (r"Service Unavailable|Bad Gateway", _I, {UP: 2.5}, "http: service unavailable"),
        (r"under maintenance|maintenance mode", _I, {UP: 2.5}, "service under maintenance"),
        (r"upstream connect error|no healthy upstream", _I, {UP: 3.0}, "proxy: no healthy upstream"),
        # memory and disk (kernel, JVM, CUDA, numpy, C++ runtimes)
        (r"out of memory|OutOfMemory", _I, {RES: 2.5}, "out of memory"),
        (
            r"Java heap space|GC overhead limit exceeded|unable to create (?:new )?native thread|Metaspace",
            _I,
            {RES: 3.0},
            "jvm: out of memory",
        ),
        (r"CUDA out of memory|CUDA error: out of memory", _I, {RES: 3.0}, "cuda: out of memory"),
        (r"Unable to allocate [\d.]+ [KMGT]i?B", _I, {RES: 3.0}, "numpy: unable to allocate"),
        (r"std::bad_alloc", 0, {RES: 3.0}, "c++: bad_alloc"),
        (r"Killed process \d+|oom[-_ ]kill", _I, {RES: 3.0}, "kernel: OOM killer"),
        (
            r"memory limit|exceed(?:ed|ing|s)? (?:the )?memory|memory (?:limit )?exceeded",
            _I,
            {RES: 2.0},
            "memory limit",
        ),
        # network layer (CPython, urllib3, OpenSSL, curl)
        (r"Remote end closed connection without response", _I, {NET: 3.0}, "http.client: remote disconnected"),
        (r"Connection aborted", _I, {NET: 2.5}, "connection aborted"),
        (r"Connection broken", _I, {NET: 2.5}, "urllib3: connection broken"),
        (r"EOF occurred in violation of protocol|UNEXPECTED_EOF_WHILE_READING", _I, {NET: 2.5}, "ssl: unexpected EOF"),
        (r"CERTIFICATE_VERIFY_FAILED|certificate verify failed", _I, {CONF: 3.0}, "ssl: certificate verify failed"),
        (r"Could not resolve host", _I, {NET: 1.5, CONF: 1.0}, "curl: could not resolve host"),
        (r"Read timed out", _I, {TMO: 2.0, NET: 1.0}, "read timed out"),
        (r"connect timeout=|Connection to \S{1,200} timed out", _I, {NET: 2.0, TMO: 1.0}, "connect timeout"),
        (r"\btimed? ?out\b|\btimeout\b", _I, {TMO: 1.0, NET: 0.3}, "timed out"),
        # dependencies (CPython import system, pip, the dynamic linker, shells, NumPy ABI)
        (r"No module named", 0, {DEP: 3.0}, "python: no module named"),
        (r"cannot import name", 0, {DEP: 3.0}, "python: cannot import name"),
        (r"Missing optional dependency|pip install|is not installed", _I, {DEP: 2.0}, "a package is not installed"),
        (r"command not found|: not found$", _I | re.M, {DEP: 3.0}, "shell: command not found"),
        (r"cannot open shared object file|undefined symbol|version `GLIBC_", _I, {DEP: 3.0}, "ld.so: shared library"),
        (
            r"compiled (?:against|using) .{0,60}(?:cannot be run|version)|binary incompatibility|dtype size changed",
            _I,
            {DEP: 3.0},
            "binary incompatibility",
        ),
        (
            r"Could not find a version that satisfies|No matching distribution found|requires .{1,80} but you have",
            _I,
            {DEP: 3.0},
            "pip: version conflict",
        ),
        (r"JAVA_HOME is not set|Java gateway process exited", _I, {DEP: 2.5, CONF: 0.5}, "no JVM"),
        # data (pandas, CPython, pyarrow, Spark, validation frameworks)
        (r"invalid literal for int\(\) with base", 0, {DATA: 2.5, CODE: 0.5}, "python: invalid literal"),
        (
            r"could not convert|cannot convert|failed to convert|Conversion failed",
            _I,
            {DATA: 2.5},
            "value could not be converted",
        ),
        (r"Failed to parse|Unable to parse|could not parse", _I, {DATA: 2.0}, "input could not be parsed"),
        (r"time data .{1,100} does not match format", _I, {DATA: 3.0}, "strptime: format mismatch"),
        (r"Error tokenizing data|Expected \d+ fields in line \d+", _I, {DATA: 3.0}, "pandas: malformed CSV"),
        (r"No columns to parse from file", _I, {MISS: 2.0, DATA: 1.0}, "pandas: empty file"),
        (r"codec can't decode byte", _I, {DATA: 3.0}, "python: undecodable bytes"),
        (
            r"Parquet column cannot be converted|Malformed records are detected|malformed",
            _I,
            {DATA: 2.5},
            "malformed input",
        ),
        (
            r"schema mismatch|incompatible schema|cannot be cast|cannot cast",
            _I,
            {DATA: 2.0, CODE: 0.5},
            "schema/type mismatch",
        ),
        (
            r"Validation with Great Expectations failed|expectation suite .{0,100} failed|Soda scan failed",
            _I,
            {DATA: 3.0},
            "data validation failed",
        ),
        (r"validation errors? for ", _I, {DATA: 2.0, CODE: 0.5}, "pydantic: validation error"),
        # missing inputs (Spark error classes, Hadoop, cloud storage, Airflow sensors/operators)
        (
            r"Path does not exist|PATH_NOT_FOUND|Input path does not exist|File does not exist",
            _I,
            {MISS: 3.0},
            "path does not exist",
        ),
        (r"Table or view not found|TABLE_OR_VIEW_NOT_FOUND", _I, {MISS: 3.0}, "spark: table not found"),
        (
            r"No (?:files|objects|blobs|keys) (?:found|matched|matching)|matched no files|did not match any files",
            _I,
            {MISS: 3.0},
            "no files found",
        ),
        (r"no such table", _I, {MISS: 2.0, CODE: 1.0}, "sqlite: no such table"),
        (r"\bdoes not exist\b|\bnot found\b", _I, {MISS: 0.8}, "does not exist"),
        # programming errors (CPython messages, Jinja, Spark analyzer)
        (r"object has no attribute", 0, {CODE: 2.0}, "python: no attribute"),
        (
            r"object is not (?:callable|subscriptable|iterable)|unsupported operand type",
            0,
            {CODE: 2.5},
            "python: wrong type",
        ),
        (
            r"got an unexpected keyword argument|takes \d+ positional arguments? but \d+",
            0,
            {CODE: 1.5, DEP: 1.0},
            "python: signature mismatch",
        ),
        (
            r"missing \d+ required (?:positional|keyword-only) argument",
            0,
            {CODE: 2.0, DEP: 0.5},
            "python: missing argument",
        ),
        (r"list index out of range", 0, {CODE: 2.0}, "python: index out of range"),
        (r"is not JSON serializable", 0, {CODE: 3.0}, "json: not serializable"),
        (r"\bis undefined\b|UndefinedError", 0, {CODE: 2.5}, "jinja: undefined"),
        (r"invalid syntax", _I, {CODE: 2.5}, "syntax error"),
        (
            r"cannot resolve .{1,200} given input columns|UNRESOLVED_COLUMN|UNRESOLVED_ROUTINE|AMBIGUOUS_REFERENCE",
            0,
            {CODE: 2.5},
            "spark: unresolved name",
        ),
        (r"mismatched input|PARSE_SYNTAX_ERROR", 0, {CODE: 3.0}, "spark sql: parse error"),
        # configuration (requests, Airflow, dbt, generic settings texts)
        (r"No connection adapters were found|No scheme supplied|Invalid URL", _I, {CONF: 3.0}, "requests: invalid URL"),
        (r"No host supplied", _I, {CONF: 3.0}, "requests: no host"),
        (
            r"environment variable .{0,80}(?:not set|missing|required|undefined)"
            r"|(?:not set|missing|required) environment variable",
            _I,
            {CONF: 3.0},
            "environment variable not set",
        ),
        (
            r"(?:missing|no) (?:required )?(?:configuration|config|setting|option|parameter)\b"
            r"|not configured\b|must be (?:set|configured|specified)",
            _I,
            {CONF: 2.0},
            "setting missing",
        ),
        (r"Invalid (?:endpoint|region|connection string|DSN)|invalid dsn", _I, {CONF: 2.5}, "invalid endpoint/DSN"),
        # timeouts (Airflow, Databricks run states, Glue run states, generic)
        (r"timed out after \d+|Timeout of \d+|timeout of \d+ ?s", _I, {TMO: 2.0}, "timed out after N"),
        (
            r"exceeded (?:the |its )?(?:maximum |max )?(?:time|duration|runtime|execution time|timeout)",
            _I,
            {TMO: 2.5},
            "exceeded time limit",
        ),
        (r"execution_timeout", 0, {TMO: 1.5}, "airflow: execution_timeout"),
        (r"\bTIMEDOUT\b|JobRunState\W{1,4}TIMEOUT|state\W{1,4}TIMEOUT", 0, {TMO: 3.0}, "job run state TIMEDOUT"),
        # worker loss (billiard, cloud preemption, notebooks)
        (r"Worker exited prematurely", _I, {LOST: 3.0}, "billiard: worker exited prematurely"),
        (
            r"\b(?:worker|node|executor|pod)(?: node)? (?:may have |has )?(?:crashed|died|gone away|disappeared)",
            _I,
            {LOST: 2.5},
            "worker crashed",
        ),
        (r"preempt|spot (?:instance )?(?:interruption|termination|reclaim)", _I, {LOST: 3.0}, "node preempted"),
        (r"Kernel died|kernel restarting", _I, {LOST: 1.5, RES: 1.0}, "notebook kernel died"),
        (r"\bexternally\b", _I, {LOST: 1.0}, "changed externally"),
    )
)


# ---- votes ----------------------------------------------------------------------------------------
def _add(votes: list[Vote], weights: Weights | None, factor: float, reason: str, kind: VoteKind) -> None:
    for cls, weight in (weights or {}).items():
        if weight * factor > 0:
            votes.append(Vote(cls, weight * factor, reason, kind))


Rule = tuple["Weights | None", VoteKind, str]


def _key_error(exc: RaisedException, facts: Facts, connecting: bool) -> Rule | None:
    """KeyError that is a missing setting, not a bug in the project's code."""
    raising = exc.frames[-1] if exc.frames else None
    if exc.name != "KeyError":
        return None
    # os.environ[...] raises KeyError from os.py __getitem__: an unset environment variable.
    if raising and raising.file.endswith("/os.py"):
        return {CONF: 3.0}, "context", "KeyError from os.environ: an unset environment variable"
    if raising and raising.library and re.search(r"conf|setting|config", raising.file, re.I):
        return {CONF: 2.5, CODE: 0.5}, "context", "KeyError inside a library's configuration code"
    if re.match(r"['\"][A-Z][A-Z0-9]*_[A-Z0-9_]+['\"]", exc.message.strip()):
        return {CONF: 2.0, CODE: 1.0}, "context", "KeyError on an ENVIRONMENT_STYLE name"
    return None


def _missing_file_by_context(exc: RaisedException, facts: Facts, connecting: bool) -> Rule | None:
    """FileNotFoundError where the missing file is code, a program or a socket, told by who raised it."""
    raising = exc.frames[-1] if exc.frames else None
    if exc.name not in ("FileNotFoundError", "PermissionError"):
        return None
    # subprocess raises from _execute_child when the program itself is missing (or not executable).
    if raising and raising.function == "_execute_child":
        return {DEP: 3.0}, "context", f"{exc.name} starting a program: the executable is missing"
    if exc.name != "FileNotFoundError":
        return None
    # The import system (importlib's loader, runpy, zipimport) reading a module's own file: the
    # deployed code or package is incomplete, not a data input.
    if raising and re.search(r"importlib|runpy|zipimport|pkgutil", raising.file):
        return {DEP: 2.5, MISS: 0.5}, "context", "FileNotFoundError while importing code"
    # connect(2) to a Unix socket path that does not exist fails with ENOENT (unix(7)), e.g.
    # /var/run/docker.sock: the client points at nothing.
    if connecting:
        return {CONF: 3.0}, "context", "FileNotFoundError while connecting: a missing socket path"
    return None


def _missing_file_by_name(exc: RaisedException, facts: Facts, connecting: bool) -> Rule | None:
    """FileNotFoundError for a program name or a configuration file rather than a data input."""
    if exc.name != "FileNotFoundError":
        return None
    message = exc.message
    # a bare name like 'java' or 'dbt' (no directory, no extension): a program, not a data file
    if re.search(r"No such file or directory: '[\w.+-]{1,40}'$", message) and not re.search(r"\.\w{1,5}'$", message):
        return {DEP: 2.0, MISS: 1.0}, "context", "FileNotFoundError for a program name"
    if re.search(r"\.(?:ya?ml|cfg|ini|toml|conf|env|pem|key|json)'?$|profiles\.yml|credentials|config", message, re.I):
        return {CONF: 2.0, MISS: 1.0}, "context", "FileNotFoundError for a configuration file"
    return None


def _refused(exc: RaisedException, facts: Facts, connecting: bool) -> Rule | None:
    """ECONNREFUSED as an exception class (CPython, java.net): the same look-alike as the errno."""
    if exc.name == "ConnectionRefusedError" or (exc.name == "ConnectException" and "refused" in exc.message.lower()):
        kind: VoteKind = "context" if facts.local_endpoint else "type"
        return _errno_weights("ECONNREFUSED", facts, connecting), kind, _errno_label("ECONNREFUSED", facts, connecting)
    return None


def _version_mismatch(exc: RaisedException, facts: Facts, connecting: bool) -> Rule | None:
    """Programming errors that are really two installed versions disagreeing."""
    if exc.name not in ("TypeError", "AttributeError", "ImportError"):
        return None
    # An API that moved between versions: "module 'numpy' has no attribute 'float'".
    if exc.name == "AttributeError" and re.search(r"^module '[\w.]+' has no attribute", exc.message.strip()):
        return {DEP: 2.5, CODE: 1.0}, "context", "AttributeError on a module: an API changed between versions"
    # Both the caller and the callee are installed libraries: a signature mismatch between them is
    # a version mismatch (the project's code is not on the failing frames).
    if len(exc.frames) < 2 or not all(f.library for f in exc.frames[-2:]):
        return None
    if facts.innermost_user_frame is None:
        return {DEP: 2.0, CODE: 1.0}, "context", f"{exc.name} between two installed libraries"
    if re.search(r"unexpected keyword argument|positional argument|has no attribute|not callable", exc.message):
        return {DEP: 1.5, CODE: 1.5}, "context", f"{exc.name} raised inside a library call"
    return None


LOOKALIKE_RULES: tuple[Callable[[RaisedException, Facts, bool], Rule | None], ...] = (
    _key_error,
    _missing_file_by_context,
    _missing_file_by_name,
    _refused,
    _version_mismatch,
)


def _known_type(exc: RaisedException) -> Rule | None:
    """What the exception's class means by itself, from the tables."""
    name = exc.name
    if name in PSYCOPG_SQLSTATE:
        state = PSYCOPG_SQLSTATE[name]
        return _sqlstate_weights(state), "type", f"{name} (SQLSTATE {state})"
    if exc.type.startswith("botocore.errorfactory.") and name in AWS_CODES:  # named after the error code
        return AWS_CODES[name], "code", f"AWS {name}"
    if name in TYPE_WEIGHTS:
        return TYPE_WEIGHTS[name], ("status" if name in STATUS_TYPES else "type"), name
    if name in AWS_CODES:
        return AWS_CODES[name], "code", f"AWS {name}"
    return next(((w, "type", f"{name} (by its name)") for p, w in NAME_WORDS if p.search(name)), None)


def _type_weights(exc: RaisedException, facts: Facts, connecting: bool) -> Rule:
    """What an exception's class says, with the documented look-alikes resolved by context."""
    for suffix, weights in QUALIFIED.items():
        if exc.type == suffix or exc.type.endswith("." + suffix):
            return weights, "type", f"{exc.name} ({suffix})"
    for rule in LOOKALIKE_RULES:
        found = rule(exc, facts, connecting)
        if found:
            return found
    return _known_type(exc) or (None, "type", exc.name)


# Exception classes this module does not know, by the words of their names (PEP 8: "the class
# naming convention ... exception names should describe the error"). Weaker than a known class.
NAME_WORDS: tuple[tuple[re.Pattern[str], Weights], ...] = (
    (re.compile(r"RateLimit|Throttl|TooManyRequests"), {RATE: 2.5}),
    (re.compile(r"Quota"), {RATE: 2.0}),
    (re.compile(r"Deadlock|LockTimeout|Serializ(?:ation|able)Failure|Concurren"), {DB: 2.0}),
    (re.compile(r"Timeout|TimedOut|Deadline"), {TMO: 2.0}),
    (re.compile(r"OutOfMemory|Memory(?:Error|Exceeded)|DiskFull|NoSpace"), {RES: 2.0}),
    (
        re.compile(
            r"Unauthori[sz]ed|Unauthenticated|Forbidden|PermissionDenied|AccessDenied|Auth|Credential|Token(?:Expired|Invalid)"
        ),
        {AUTH: 2.0},
    ),
    (re.compile(r"Unavailable|ServerError|BadGateway"), {UP: 2.0}),
    (re.compile(r"NotFound|NoSuch|DoesNotExist|Missing(?!Dependency)"), {MISS: 1.5, CONF: 0.5}),
    (re.compile(r"Config|Setting"), {CONF: 2.0}),
    (re.compile(r"Import|Dependency|Version"), {DEP: 2.0}),
    (re.compile(r"Validation|Schema|Parse|Decode|Format|Corrupt|Malformed"), {DATA: 1.5, CODE: 0.5}),
    (re.compile(r"Connection|Network|Socket|Transport|Disconnect"), {NET: 1.5}),
)


def _sqlstate_weights(state: str) -> Weights | None:
    return SQLSTATE_EXACT.get(state) or SQLSTATE_CLASS.get(state[:2])


def _exception_votes(facts: Facts, votes: list[Vote], connecting: bool) -> None:
    depth = len(facts.chain)
    for position, exc in enumerate(facts.chain):
        factor = OUTWARD_DECAY ** (depth - 1 - position)
        if exc.name in GENERIC_TYPES:
            continue
        weights, kind, label = _type_weights(exc, facts, connecting)
        where = "root cause" if position == depth - 1 else "wrapper"
        _add(votes, weights, factor, f"{label} [{where}]", kind)
    for exc in facts.others[-10:]:
        if exc.name in GENERIC_TYPES or exc.type.endswith("Warning"):
            continue
        weights, kind, label = _type_weights(exc, facts, connecting)
        _add(votes, weights, OUTSIDE_CHAIN, f"{label} [earlier in the log]", kind)


def _int_table(table: Mapping[int, Weights]) -> Callable[[str], Weights | None]:
    return lambda value: table.get(int(value)) if value.lstrip("-").isdigit() else None


# kind of code -> (its meaning, how a reason names it, what sort of evidence it is)
CODE_MEANINGS: dict[str, tuple[Callable[[str], Weights | None], str, VoteKind]] = {
    "http": (_int_table(HTTP_STATUS), "HTTP {}", "status"),
    "sqlstate": (lambda v: _sqlstate_weights(v), "SQLSTATE {}", "code"),
    "mysql": (MYSQL_ERRORS.get, "MySQL error {}", "code"),
    "signal": (SIGNALS.get, "signal {}", "status"),
    "exit_code": (_int_table(EXIT_CODES), "exit code {}", "status"),
    "aws": (AWS_CODES.get, "AWS error code {}", "code"),
    "grpc": (GRPC_STATUS.get, "gRPC {}", "status"),  # gRPC's status is a carrier, like HTTP's
    "vendor": (VENDOR_CODES.get, "error code {}", "code"),
    "k8s": (K8S_REASONS.get, "Kubernetes {}", "event"),
    "spark": (SPARK_EVENTS.get, "Spark/YARN {}", "event"),
    "dbt": (DBT_ERRORS.get, "dbt {}", "event"),
    "airflow": (AIRFLOW_EVENTS.get, "Airflow {}", "event"),
}


def _code_votes(facts: Facts, votes: list[Vote], has_chain: bool, connecting: bool) -> None:
    seen: set[tuple[str, str]] = set()
    for code in facts.codes:
        if (code.kind, code.value) in seen:
            continue
        seen.add((code.kind, code.value))
        factor = 1.0 if (code.in_chain or not has_chain) else OFF_CHAIN_CODE
        if code.kind == "errno":
            label = _errno_label(code.value, facts, connecting)
            kind: VoteKind = "context" if label != code.value else "status"  # a resolved look-alike
            _add(votes, _errno_weights(code.value, facts, connecting), factor, label, kind)
        elif code.kind in CODE_MEANINGS:
            meaning, label, vote_kind = CODE_MEANINGS[code.kind]
            _add(votes, meaning(code.value), factor, label.format(code.value), vote_kind)


def _errno_weights(name: str, facts: Facts, connecting: bool) -> Weights | None:
    if name == "ENOENT" and connecting:
        # connect(2) on a Unix socket whose path does not exist fails with ENOENT (unix(7)): the
        # client points at a socket that is not there (docker.sock, a local database socket).
        return {CONF: 3.0}
    if name == "ECONNREFUSED":
        # Nothing listens on that port. To localhost or a Unix socket from a worker, that is a client
        # left on its default address (a missing setting); to a real host, the service is down.
        return {CONF: 2.5, UP: 0.5} if facts.local_endpoint else {UP: 2.5, NET: 0.5}
    return ERRNO.get(name)


def _connecting(facts: Facts) -> bool:
    """The failing call was opening a connection (requests/urllib3/driver connection errors)."""
    return any(
        re.search(r"Connection|NewConnection|ProtocolError|OperationalError", exc.name) for exc in facts.chain
    ) and any(re.search(r"Connection aborted|connect|socket", exc.message, re.I) for exc in facts.chain)


def _errno_label(name: str, facts: Facts, connecting: bool) -> str:
    if name == "ENOENT" and connecting:
        return "ENOENT while connecting: a socket path that does not exist"
    if name == "ECONNREFUSED":
        return "ECONNREFUSED to a local endpoint" if facts.local_endpoint else "ECONNREFUSED"
    return name


def _phrase_votes(facts: Facts, text: str, votes: list[Vote]) -> None:
    focus = facts.chain_text
    for pattern, weights, label in PHRASES:
        if focus and pattern.search(focus):
            _add(votes, weights, 1.0, label, "phrase")
        elif pattern.search(text):
            _add(votes, weights, OFF_CHAIN_CODE if focus else 1.0, label, "phrase")


# Kubernetes RBAC denials read 'pods is forbidden: User "system:serviceaccount:ns:sa" cannot create ...'.
# A pod that names no serviceAccountName runs as the namespace's "default" account, which RBAC grants
# nothing: the denial then means a missing setting (config), not a revoked permission.
_RBAC_DENIED = re.compile(r'User "(system:serviceaccount:[\w.\-]{1,100}:([\w.\-]{1,100})|[^"\n]{1,200})" cannot \w+')


# docker-py and other clients of a local daemon: the Unix socket path is missing in this container.
_MISSING_SOCKET = re.compile(
    r"\.sock\b.{0,80}(?:does not exist|No such file|not found)"
    r"|(?:does not exist|No such file|not found).{0,80}\.sock\b",
    re.I,
)
# AWS error codes named outside botocore's "An error occurred (Code)" form (AWS SDK logs, wrappers):
# only the distinctive multi-word codes, not the generic ones that any library may use.
_CAMEL_WORD = re.compile(r"\b([A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*){1,6})\b")
_GENERIC_AWS_WORDS = frozenset(
    {"NotFound", "InternalError", "ValidationError", "ServiceException", "InvalidRequest", "InvalidArgument"}
)


def _lookalike_votes(facts: Facts, text: str, votes: list[Vote]) -> None:
    if _MISSING_SOCKET.search(text):
        _add(votes, {CONF: 3.0}, 1.0, "a local daemon's Unix socket is missing", "context")
    named = set(facts.aws_error_codes)
    for word in dict.fromkeys(_CAMEL_WORD.findall(text[-4000:])):
        if word in AWS_CODES and word not in named and word not in _GENERIC_AWS_WORDS and word not in TYPE_WEIGHTS:
            _add(votes, AWS_CODES[word], 0.8, f"AWS error code {word} (named in the text)", "code")
    match = _RBAC_DENIED.search(facts.chain_text) or _RBAC_DENIED.search(text)
    if match:
        if match.group(2) == "default":
            _add(votes, {CONF: 3.0, AUTH: 1.0}, 1.0, "RBAC denied the namespace's default service account", "context")
        else:
            _add(votes, {AUTH: 3.0}, 1.0, "Kubernetes RBAC: the identity cannot do this", "phrase")


def _runbook_votes(text: str, runbooks: Iterable[_RunbookLike], votes: list[Vote]) -> None:
    for book in runbooks:
        hits = []
        for pattern in book.signals:
            try:
                if re.search(pattern, text, re.IGNORECASE):
                    hits.append(pattern)
            except re.error:
                continue
        if hits:
            weight = RUNBOOK_SIGNAL_WEIGHT * (1.0 + math.log(len(hits)))
            votes.append(Vote(book.error_class, weight, f"runbook signal {hits[0][:60]!r}", "signal"))


def _damp_carriers(votes: list[Vote]) -> list[Vote]:
    """A service's specific code or message outranks the HTTP status / errno / signal carrying it."""
    specific = {
        v.error_class
        for v in votes
        if v.kind in ("code", "event", "phrase", "type", "context") and v.weight >= SPECIFIC
    }
    if not specific:
        return votes
    return [
        Vote(v.error_class, v.weight * STATUS_DAMPING, v.reason + " (outweighed)", v.kind)
        if v.kind == "status" and v.error_class not in specific
        else v
        for v in votes
    ]


def _combine(votes: Sequence[Vote]) -> dict[str, float]:
    """Per class: the strongest vote fully, the k-th strongest with weight 1/k."""
    by_class: dict[str, list[float]] = defaultdict(list)
    for vote in votes:
        by_class[vote.error_class].append(vote.weight)
    return {
        cls: sum(w / rank for rank, w in enumerate(sorted(weights, reverse=True), start=1))
        for cls, weights in by_class.items()
    }


def explain(facts: Facts | None, text: str, runbooks: Iterable[_RunbookLike] = ()) -> ClassEvidence:
    """Class scores with the facts behind them. ``facts`` may be None (then parsed from ``text``).

    Never raises on odd input; the work is bounded (the parser reads a bounded tail, phrases and
    runbook signals scan the chain's lines and the last ``MAX_TEXT`` characters).
    """
    text = text if isinstance(text, str) else ""
    facts = facts if facts is not None else parse(text)
    window = text[-MAX_TEXT:]
    if facts.chain_text and facts.chain_text not in window:
        window = f"{facts.chain_text[:MAX_TEXT]}\n{window}"
    connecting = _connecting(facts)
    votes: list[Vote] = []
    _exception_votes(facts, votes, connecting)
    _code_votes(facts, votes, has_chain=bool(facts.chain), connecting=connecting)
    _phrase_votes(facts, window, votes)
    _lookalike_votes(facts, window, votes)
    _runbook_votes(window, runbooks, votes)
    votes = _damp_carriers(votes)
    raw = _combine(votes)
    total = sum(raw.values())
    scores = {cls: value / total for cls, value in raw.items()} if total > 0 else {}
    return ClassEvidence(scores=scores, raw=raw, votes=tuple(votes))


def score_classes(facts: Facts | None, text: str, runbooks: Iterable[_RunbookLike] = ()) -> dict[str, float]:
    """Normalised class scores (summing to 1; empty when nothing is known). See ``explain``."""
    return explain(facts, text, runbooks).scores
