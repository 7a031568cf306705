"""Structured facts from a failure text: what the libraries said, not the words around it.

A scrubbed log tail or traceback is parsed into the exception chain that ended the task
(outermost first, the root cause last, with how each link was printed: Python's "direct
cause" / "during handling" markers, Java's ``Caused by:``, or an exception quoted inside
another's message), the frames of each traceback (user code vs installed libraries), and the
codes that libraries put in their messages: HTTP statuses, SQLSTATEs, errno, signals and exit
codes, AWS error codes, gRPC statuses, Kubernetes reasons, Spark/YARN executor loss, dbt error
kinds and Airflow's own events. Scoring (``scoring.py``) maps these to error classes.

The parser is pure, line-oriented and bounded: it reads at most ``MAX_CHARS`` of the text's
tail (the failure is at the end), cuts lines to ``MAX_LINE`` characters, uses regexes without
nested repetition, and never raises: any input (binary, empty, huge) gives some ``Facts``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

MAX_CHARS = 64_000  # the tail kept; a traceback is at the end of a log
MAX_LINE = 2_000  # longer lines are cut before any regex sees them
MAX_MESSAGE = 1_000  # an exception's message (with its continuation lines)
MAX_CONTINUATION = 8  # lines after an exception line that still belong to its message
MAX_EXCEPTIONS = 200  # exception lines kept from one text
MAX_CHAIN = 32  # links kept from one chain: the outermost few and the innermost rest

Link = Literal["cause", "context", "embedded"]
CodeKind = Literal[
    "http",  # HTTP status 400-599
    "sqlstate",  # SQLSTATE, 5 characters
    "mysql",  # MySQL server/client error number
    "errno",  # errno name (ECONNREFUSED, EAI_AGAIN...)
    "signal",  # SIGKILL, SIGTERM...
    "exit_code",  # process exit / return code as printed (137, -9, 127)
    "aws",  # AWS error code (botocore ClientError, AWS SDK for Java)
    "grpc",  # gRPC status name (DEADLINE_EXCEEDED...)
    "vendor",  # other service error codes (Databricks error_code, Google reason, snowflake:NNNNNN)
    "k8s",  # Kubernetes pod/container reason
    "spark",  # Spark/YARN event
    "dbt",  # dbt error kind
    "airflow",  # Airflow's own event
]


@dataclass(frozen=True)
class Frame:
    """One stack frame; ``library`` when it is in installed code (site-packages, the stdlib, a JVM library)."""

    file: str
    line: int
    function: str
    library: bool

    def __str__(self) -> str:
        return f"{self.file.rsplit('/', 1)[-1]}:{self.function}"


@dataclass(frozen=True)
class RaisedException:
    """An exception as printed: its type as written (maybe dotted), message and the frames that raised it.

    ``link`` says how it relates to the exception before it in ``Facts.chain`` (the one that
    wraps it): "cause" (``raise ... from`` / Java ``Caused by:``), "context" (raised while
    handling it) or "embedded" (quoted inside the wrapper's message, as requests and urllib3 do).
    """

    type: str
    message: str
    frames: tuple[Frame, ...] = ()
    link: Link | None = None

    @property
    def name(self) -> str:
        """The unqualified class name: ``psycopg2.errors.DeadlockDetected`` -> ``DeadlockDetected``."""
        return self.type.rsplit(".", 1)[-1].rsplit("$", 1)[-1]

    @property
    def module(self) -> str:
        return self.type.rsplit(".", 1)[0] if "." in self.type else ""

    def __str__(self) -> str:
        return f"{self.type}: {self.message[:120]}" if self.message else self.type


@dataclass(frozen=True)
class Code:
    """A code a library put in the text; ``in_chain`` when it is in the final exception chain's messages."""

    kind: CodeKind
    value: str
    in_chain: bool

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class Facts:
    """What a failure text says, typed. ``chain`` is the failure that ended the task, outermost first."""

    chain: tuple[RaisedException, ...] = ()
    others: tuple[RaisedException, ...] = ()  # earlier attempts, warnings, exceptions outside the chain
    codes: tuple[Code, ...] = ()
    hosts: tuple[str, ...] = ()  # endpoints the failing calls tried (host or host:port), chain first
    local_endpoint: bool = False  # a call went to localhost / 127.0.0.1 / a Unix socket
    truncated: bool = False  # the text was longer than MAX_CHARS; only its tail was read
    chain_text: str = field(default="", repr=False)  # the chain's lines, for phrase matching

    @property
    def outermost(self) -> RaisedException | None:
        return self.chain[0] if self.chain else None

    @property
    def innermost(self) -> RaisedException | None:
        """The root cause: the last link of the chain."""
        return self.chain[-1] if self.chain else None

    @property
    def frames(self) -> tuple[Frame, ...]:
        """The frames of the innermost exception that has a traceback."""
        for exc in reversed(self.chain):
            if exc.frames:
                return exc.frames
        return ()

    @property
    def raising_frame(self) -> Frame | None:
        """Where the root cause was raised (the last frame of its traceback)."""
        return self.frames[-1] if self.frames else None

    @property
    def innermost_user_frame(self) -> Frame | None:
        """The deepest frame of the project's own code on the failing path (any link of the chain)."""
        for exc in reversed(self.chain):
            for frame in reversed(exc.frames):
                if not frame.library:
                    return frame
        return None

    @property
    def library_frames(self) -> tuple[Frame, ...]:
        return tuple(f for f in self.frames if f.library)

    def values(self, kind: CodeKind, *, chain_only: bool = False) -> tuple[str, ...]:
        """The distinct values of one kind of code, in order of appearance."""
        seen: dict[str, None] = {}
        for code in self.codes:
            if code.kind == kind and (code.in_chain or not chain_only):
                seen.setdefault(code.value, None)
        return tuple(seen)

    @property
    def http_statuses(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.values("http"))

    @property
    def sqlstates(self) -> tuple[str, ...]:
        return self.values("sqlstate")

    @property
    def errnos(self) -> tuple[str, ...]:
        return self.values("errno")

    @property
    def signals(self) -> tuple[str, ...]:
        return self.values("signal")

    @property
    def exit_codes(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.values("exit_code"))

    @property
    def aws_error_codes(self) -> tuple[str, ...]:
        return self.values("aws")

    @property
    def grpc_statuses(self) -> tuple[str, ...]:
        return self.values("grpc")

    @property
    def k8s_reasons(self) -> tuple[str, ...]:
        return self.values("k8s")

    @property
    def spark_events(self) -> tuple[str, ...]:
        return self.values("spark")

    @property
    def dbt_errors(self) -> tuple[str, ...]:
        return self.values("dbt")

    @property
    def airflow_events(self) -> tuple[str, ...]:
        return self.values("airflow")

    def summary(self) -> list[str]:
        """Short strings for a person (and a prompt): the chain and the codes."""
        out = [("<- " if exc.link else "") + str(exc)[:140] for exc in self.chain]
        out += sorted({str(c) for c in self.codes})
        if self.local_endpoint:
            out.append("endpoint:local")
        return out


# ---- reference tables ----------------------------------------------------------------------------
# Linux errno numbers (asm-generic/errno-base.h, errno.h) and getaddrinfo's EAI_* (glibc netdb.h,
# as Python's socket.gaierror prints them, negative).
ERRNO_NUMBERS: dict[int, str] = {
    1: "EPERM",
    2: "ENOENT",
    4: "EINTR",
    5: "EIO",
    11: "EAGAIN",
    12: "ENOMEM",
    13: "EACCES",
    17: "EEXIST",
    23: "ENFILE",
    24: "EMFILE",
    28: "ENOSPC",
    30: "EROFS",
    32: "EPIPE",
    98: "EADDRINUSE",
    99: "EADDRNOTAVAIL",
    101: "ENETUNREACH",
    103: "ECONNABORTED",
    104: "ECONNRESET",
    107: "ENOTCONN",
    110: "ETIMEDOUT",
    111: "ECONNREFUSED",
    112: "EHOSTDOWN",
    113: "EHOSTUNREACH",
    122: "EDQUOT",
    -2: "EAI_NONAME",
    -3: "EAI_AGAIN",
    -5: "EAI_NODATA",
    -9: "EAI_ADDRFAMILY",
    10054: "ECONNRESET",  # Winsock WSAECONNRESET
    10060: "ETIMEDOUT",  # WSAETIMEDOUT
    10061: "ECONNREFUSED",  # WSAECONNREFUSED
}
ERRNO_NAMES = frozenset(v for v in ERRNO_NUMBERS.values() if not v.startswith("EAI_"))
# glibc's strerror()/gai_strerror() texts: what Python, libpq, the JVM and curl print for an errno.
_STRERROR: tuple[tuple[str, str], ...] = (
    ("connection refused", "ECONNREFUSED"),
    ("connection reset by peer", "ECONNRESET"),
    ("connection timed out", "ETIMEDOUT"),
    ("no space left on device", "ENOSPC"),
    ("cannot allocate memory", "ENOMEM"),
    ("no such file or directory", "ENOENT"),
    ("permission denied", "EACCES"),
    ("broken pipe", "EPIPE"),
    ("too many open files", "EMFILE"),
    ("network is unreachable", "ENETUNREACH"),
    ("no route to host", "EHOSTUNREACH"),
    ("disk quota exceeded", "EDQUOT"),
    ("read-only file system", "EROFS"),
    ("software caused connection abort", "ECONNABORTED"),
    ("temporary failure in name resolution", "EAI_AGAIN"),
    ("name or service not known", "EAI_NONAME"),
    ("nodename nor servname provided", "EAI_NONAME"),
    ("no address associated with hostname", "EAI_NODATA"),
    ("resource temporarily unavailable", "EAGAIN"),
)
# signal(7) numbers on Linux x86/ARM.
SIGNAL_NUMBERS: dict[int, str] = {
    1: "SIGHUP",
    2: "SIGINT",
    3: "SIGQUIT",
    6: "SIGABRT",
    7: "SIGBUS",
    9: "SIGKILL",
    11: "SIGSEGV",
    13: "SIGPIPE",
    14: "SIGALRM",
    15: "SIGTERM",
}
# gRPC status codes (grpc/status.h; the numbers google.api_core and grpc_status print).
GRPC_NUMBERS: dict[int, str] = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}
GRPC_NAMES = frozenset(GRPC_NUMBERS.values())
# SQLSTATE classes defined by the SQL standard and PostgreSQL (Appendix A), used to tell a real
# SQLSTATE from any five characters.
SQLSTATE_CLASSES = frozenset(
    re.findall(
        r"\w\w",
        "00 01 02 03 08 09 0A 0B 0F 0L 0P 0Z 20 21 22 23 24 25 26 27 28 2B 2D 2F 34 38 39 3B 3D 3F 40 42 44"
        " 53 54 55 57 58 72 F0 HV HY P0 XX",
    )
)
# Kubernetes pod/container status reasons (kubelet, the scheduler, the eviction manager).
K8S_REASONS = frozenset(
    {
        "OOMKilled",
        "Evicted",
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CrashLoopBackOff",
        "DeadlineExceeded",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "ContainerCannotRun",
        "ContainerStatusUnknown",
        "Preempted",
        "Preempting",
        "NodeLost",
        "NodeShutdown",
        "Terminated",
        "Unschedulable",
        "FailedScheduling",
        "BackoffLimitExceeded",
        "DiskPressure",
        "MemoryPressure",
        "PIDPressure",
    }
)

# ---- line-level regexes (each bounded; no nested repetition) ---------------------------------------
_PREFIXES = (
    re.compile(r"^\[[^\]\n]{0,100}\]\s*"),  # [2024-01-01 00:00:00,000] / [taskinstance.py:123]
    re.compile(r"^\{[^}\n]{0,100}\}\s*"),  # {taskinstance.py:1234}
    re.compile(r"^\d{4}-\d\d-\d\d[T ][\d:.,]{5,20}(?:Z|[+-]\d\d:?\d\d| ?UTC)?\s*"),
    re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d\s*"),  # log4j: 24/01/01 00:00:00
    re.compile(r"^\d\d:\d\d:\d\d(?:[.,]\d{1,6})?\s*"),
    re.compile(r"^(?:ERROR|INFO|WARNING|WARN|CRITICAL|DEBUG|FATAL|TRACE)\b\s*(?:[-:|]\s*)?"),
    re.compile(r"^[\w.\-]{1,80}:\d{1,6}\s*(?:[-:|]\s*)?(?=\S)"),  # file.py:123 -
    re.compile(r'^Exception in thread "[^"\n]{0,100}"\s*'),
    re.compile(r"^(?:[-|:>+!]\s*){1,3}"),  # py4j ": org.x...", exception groups "| ", "> "
    re.compile(r"^E\s{2,}"),  # pytest-style
)
_PY_CAUSE = "The above exception was the direct cause of the following exception"
_PY_CONTEXT = "During handling of the above exception, another exception occurred"
_TRACEBACK = re.compile(r"Traceback \(most recent call last\):")
_PY_FRAME = re.compile(r'^\s*File "([^"\n]{1,500})", line (\d{1,7}), in (\S{1,200})')
_JAVA_FRAME = re.compile(r"^\s*at ([\w$.<>/]{1,300})\(([^)\n]{0,200})\)")
_CAUSED_BY = re.compile(r"^\s*Caused by:\s*")
_EXCEPTION_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.$]{0,200})(?:: ?(?P<msg>.*)|:)?$")
_EMBEDDED = re.compile(
    r"(?<![\w.])(?P<type>(?:[a-z_][\w]{0,40}\.){0,4}[A-Z][A-Za-z0-9]{1,60}"
    r"(?:Error|Exception|Timeout|Failure|Disconnected|IncompleteRead|Refused))\((?P<msg>[^()\n]{0,300})"
)
_INLINE = re.compile(
    r"(?:^|: |\n)(?P<type>(?:[a-z_]\w{0,40}\.){1,6}[A-Z]\w{1,80}(?:Error|Exception)): (?P<msg>[^\n]{0,300})"
)
_SUFFIXES = (
    "Error",
    "Exception",
    "Exit",
    "Interrupt",
    "Warning",
    "Timeout",
    "Failure",
    "Fault",
    "Refused",
    "Denied",
    "NotFound",
    "Conflict",
    "Unavailable",
    "Exceeded",
    "Expired",
    "Forbidden",
    "Unauthorized",
    "Unauthenticated",
    "Throttled",
    "Disconnected",
    "Exhausted",
    "Violation",
    "Detected",
    "Canceled",
    "Cancelled",
    "Aborted",
    "Closed",
    "Terminated",
    "Invalid",
    "Expired",
)
# Exception classes without one of those suffixes, as their libraries name them.
_KNOWN_BARE = frozenset(
    {
        "KeyboardInterrupt",
        "StopIteration",
        "SystemExit",
        "GeneratorExit",
        "IncompleteRead",
        "gaierror",
        "herror",
        "timeout",
        "ReadTimeout",
        "ConnectTimeout",
        "DeadlineExceeded",
        "ResourceExhausted",
        "ServiceUnavailable",
        "TooManyRequests",
        "BadRequest",
        "BadGateway",
        "GatewayTimeout",
        "PermissionDenied",
        "RetryError",
        "NoSuchKey",
        "NoSuchBucket",
        "InternalServerError",
        "Conflict",
        "Aborted",
        "Cancelled",
        "TemporarilyUnavailable",
        "ResourceDoesNotExist",
        "Unknown",
        "DataLoss",
        "FailedPrecondition",
        "OutOfRange",
        "InvalidArgument",
        "AlreadyExists",
        "Unauthenticated",
        "CommunicationsException",
    }
)
_NOT_TYPES = re.compile(
    r"^(?:https?|file|s3a?|gs|hdfs|abfss?|wasbs?|jdbc|Note|Hint|Detail|Context|Reason)$|\.(?:py|java|scala|sql|log|yml|yaml|json|csv|txt|cfg|conf|ini)$"
)
_BARE_WORDS = frozenset({"Error", "Exception", "Warning", "Failure", "Timeout"})

_HTTP = (
    re.compile(r"\b([45]\d\d) (?:Client|Server) Error\b"),  # requests Response.raise_for_status
    re.compile(r"\bHTTP(?: ?Error| error|/\d(?:\.\d)?| status(?: code)?|Error)\s*:?\s*([45]\d\d)\b", re.I),
    re.compile(r"(?<!exit )(?<!exit_)\bstatus(?:[ _-]?code)?\s*[:=]?\s*\"?([45]\d\d)\b", re.I),
    re.compile(r"\bResponse \[([45]\d\d)\]"),
    re.compile(r"\bHttpError\s+([45]\d\d)\b"),  # googleapiclient
    re.compile(r"ApiException:?\s*\(([45]\d\d)\)"),  # kubernetes client
    re.compile(r"\berror code:?\s*([45]\d\d)\b", re.I),
    re.compile(r"\b(?:response|returned|got|received)\s+(?:code\s+|status\s+)?([45]\d\d)\b", re.I),
    re.compile(r"[\"'](?:code|status|statusCode|status_code|httpStatus|http_status)[\"']\s*:\s*\"?([45]\d\d)\b"),
    re.compile(
        r"\b([45]\d\d)\b\s*[:\-,]?\s*(?:Bad Request|Unauthorized|Forbidden|Not Found|Method Not Allowed|"
        r"Request Time-?out|Conflict|Gone|Payload Too Large|Too Many Requests|Internal Server Error|"
        r"Bad Gateway|Service Unavailable|Gateway Time-?out)\b",
        re.I,
    ),
)
_SQLSTATE = (
    re.compile(r"\bSQL ?STATE\b\s*(?:is|code)?\s*[:=\[(]?\s*['\"]?([0-9A-Z]{5})\b", re.I),
    re.compile(r"\bpgcode\s*[:=]\s*['\"]?([0-9A-Z]{5})\b"),
    re.compile(r"\b\d{6} \(([0-9A-Z]{5})\)"),  # Snowflake: 000630 (57014): ...
    re.compile(r"\bERROR \d{4} \(([0-9A-Z]{5})\)"),  # MySQL client: ERROR 1045 (28000)
    re.compile(r"\b(\d\dP\d\d)\b"),  # PostgreSQL-specific codes carry a P: 40P01, 28P01, 42P01, 57P01
    re.compile(r"\('([0-9A-Z]{5})', '\["),  # pyodbc: ('40001', '[40001] [Microsoft][ODBC Driver ...')
    re.compile(r"\[([0-9A-Z]{5})\] \[[A-Za-z]"),  # ODBC diagnostic records: [08S01] [Microsoft]...
)
_MYSQL = (
    re.compile(r"\((\d{4}), [\"']"),  # pymysql / mysqlclient: (1213, 'Deadlock found ...')
    re.compile(r"\bERROR (\d{4}) \([0-9A-Z]{5}\)"),
)
_ERRNO = (
    re.compile(r"\[Errno (-?\d{1,5})\]"),
    re.compile(r"\berrno\s*[:=]?\s*(-?\d{1,5})\b", re.I),
    re.compile(r"\b[A-Z]\w{0,40}Error\((-?\d{1,5}), ['\"]"),  # ConnectionResetError(104, 'Connection reset ...')
    re.compile(r"\bos error (\d{1,5})\b"),  # Rust-based clients (polars, delta-rs): (os error 28)
)
_ERRNO_NAME = re.compile(r"\b(E[A-Z]{3,14})\b")
_SIGNAL_NAME = re.compile(r"\b(SIG(?:KILL|TERM|INT|SEGV|ABRT|BUS|HUP|ALRM|QUIT|PIPE))\b")
_SIGNAL_NUMBER = re.compile(r"\b(?:killed by |terminated by |received |with |by )?signal[: =]+(-?\d{1,2})\b", re.I)
# bash reports a child killed by SIGKILL with strsignal(9), "Killed": "Killed", "line 1: 4242 Killed  cmd".
_KILLED = re.compile(
    r"^(?:\S{1,200}:\s{1,4})?(?:line \d{1,7}:\s{1,4})?(?:\d{1,10}\s{1,4})?Killed(?:\s{1,40}\S.{0,300})?$"
)
_EXIT = (
    re.compile(r"\bexit(?:ed)?[ _]?(?:code|status|value)(?: is| was| of)?\s*[:=]?\s*(-?\d{1,3})\b", re.I),
    re.compile(r"\bexitCode[\"']?\s*[:=]\s*(-?\d{1,3})\b"),
    re.compile(r"\breturn(?:ed)? ?code\s*[:=]?\s*(-?\d{1,3})\b", re.I),
    re.compile(r"\breturned non-zero exit status (-?\d{1,3})\b"),
    re.compile(r"\bError code is:?\s*(-?\d{1,3})\b"),  # Airflow SparkSubmitHook / SSH: "Error code is: 1"
    re.compile(r"\bexited with (?:code|status) (-?\d{1,3})\b", re.I),
    re.compile(r"\bNegsignal\.SIG(KILL|TERM|SEGV|ABRT)\b"),
)
_AWS = (
    re.compile(r"An error occurred \(([\w.]{2,80})\) when calling"),  # botocore ClientError
    re.compile(r"\bError Code: ([A-Za-z][\w.]{1,80})"),  # AWS SDK for Java / S3A
    re.compile(r"<Code>(\w{2,80})</Code>"),  # S3 XML error bodies
    re.compile(r"[\"']__type[\"']\s*:\s*[\"'](?:[\w.]{0,80}#)?(\w{2,80})[\"']"),  # JSON protocol errors
)
_GRPC = (
    re.compile(r"\bStatusCode\.([A-Z_]{2,30})\b"),
    re.compile(r"\bgrpc_status[\"']?\s*[:=]\s*(\d{1,2})\b"),
    re.compile(
        r"\b(DEADLINE_EXCEEDED|RESOURCE_EXHAUSTED|PERMISSION_DENIED|FAILED_PRECONDITION|INVALID_ARGUMENT|"
        r"ALREADY_EXISTS|OUT_OF_RANGE|DATA_LOSS)\b"
    ),
    re.compile(
        r"\b(?:status|code|grpc)\s*[:=]\s*[\"']?(UNAVAILABLE|INTERNAL|ABORTED|CANCELLED|UNAUTHENTICATED|NOT_FOUND|UNKNOWN)\b"
    ),
)
_VENDOR = (
    re.compile(r"\b(\d{6}) \([0-9A-Z]{5}\)"),  # Snowflake: 000630 (57014): the error number before the SQLSTATE
    re.compile(r"[\"']?\b(?:error_code|errorCode|error-code|ErrorCode)[\"']?\s*[:=]\s*[\"']?([A-Z][A-Z0-9_]{3,60})\b"),
    re.compile(
        r"[\"']reason[\"']\s*:\s*[\"']([a-zA-Z]{4,40})[\"']"
    ),  # Google JSON errors: "reason": "rateLimitExceeded"
    re.compile(r"\breason:\s*([a-z][a-zA-Z]{3,40})\b"),  # google.api_core: "... reason: backendError"
    re.compile(
        r"\b(TEMPORARILY_UNAVAILABLE|REQUEST_LIMIT_EXCEEDED|RESOURCE_DOES_NOT_EXIST|INVALID_PARAMETER_VALUE|"
        r"INTERNAL_ERROR|RESOURCE_CONFLICT|QUOTA_EXCEEDED|INVALID_STATE|MALFORMED_REQUEST|BAD_REQUEST|"
        r"ENDPOINT_NOT_FOUND|NOT_IMPLEMENTED|CUSTOMER_UNAUTHORIZED)\b"
    ),
)
_K8S = (
    re.compile(
        r"\b(OOMKilled|Evicted|ImagePullBackOff|ErrImagePull|ErrImageNeverPull|InvalidImageName|CrashLoopBackOff|"
        r"CreateContainerConfigError|CreateContainerError|RunContainerError|ContainerCannotRun|"
        r"ContainerStatusUnknown|NodeLost|NodeShutdown|Unschedulable|FailedScheduling|BackoffLimitExceeded|"
        r"DiskPressure|MemoryPressure|PIDPressure)\b"
    ),
    re.compile(r"[\"']?\breason[\"']?\s*[:= ]\s*[\"']?(DeadlineExceeded|Preempted|Preempting)\b", re.I),
)
_K8S_EXTRA = (
    (re.compile(r"The node was low on resource: \[?(memory|ephemeral-storage|pids)", re.I), "NodePressure"),
    (
        re.compile(r"exceeds? the total limit of containers|exceeded its local ephemeral storage limit", re.I),
        "EphemeralStorageLimit",
    ),
    (re.compile(r"\bInsufficient (?:cpu|memory|nvidia\.com/gpu|ephemeral-storage)\b", re.I), "Insufficient"),
    (re.compile(r"\bpod .{0,120}\b(?:was |has been )?deleted\b|\bPod .{0,80}was terminated\b", re.I), "PodDeleted"),
)
_SPARK = (
    (
        re.compile(
            r"\bExecutorLostFailure\b|\bLost executor \d+|\blost executor\b|\bSlave lost\b|\bWorker lost\b", re.I
        ),
        "executor_lost",
    ),
    (
        re.compile(r"Container killed by YARN for exceeding (?:physical |virtual )?memory limits", re.I),
        "yarn_memory_limit",
    ),
    (re.compile(r"\bContainer killed on request\b"), "container_killed"),
    (re.compile(r"\bContainer (?:marked as failed|released on a \*lost\* node|preempted)\b", re.I), "container_lost"),
    (re.compile(r"\bExecutor heartbeat timed out\b|\bheartbeat timed out after\b", re.I), "executor_heartbeat"),
    (
        re.compile(
            r"\bFetchFailed(?:Exception)?\b|\bMetadataFetchFailedException\b|Missing an output location for shuffle"
        ),
        "shuffle_fetch_failed",
    ),
    (re.compile(r"\bSparkOutOfMemoryError\b|Unable to acquire \d+ bytes of memory"), "spark_oom"),
    (re.compile(r"\bspark\.driver\.maxResultSize\b"), "max_result_size"),
    (re.compile(r"Python worker exited unexpectedly|Python worker crashed", re.I), "python_worker_crashed"),
    (re.compile(r"\bdecommission(?:ed|ing)\b", re.I), "decommissioned"),
    (re.compile(r"Job aborted due to stage failure"), "stage_failure"),
)
_YARN_EXIT = re.compile(r"\b(?:exit status|Exit status|exit code|Exit code)(?: is)?:?\s*(-10[0-7])\b")
_DBT_CONTEXT = re.compile(r"\bdbt\b|\bin (?:model|test|macro|seed|snapshot|sql operation|exposure|source) ", re.I)
_DBT = (
    (re.compile(r"\bCompilation Error\b"), "compilation", True),
    (re.compile(r"\bDatabase Error\b"), "database", True),
    (re.compile(r"\bRuntime Error\b"), "runtime", True),
    (re.compile(r"\bParsing Error\b"), "parsing", True),
    (re.compile(r"\bDependency Error\b"), "dependency", True),
    (re.compile(r"Env var required but not provided"), "env_var_missing", False),
    (re.compile(r"Could not find profile named"), "profile_missing", False),
    (re.compile(r"\bFailure in test\b|\bGot \d+ results?, configured to (?:fail|warn) if\b"), "test_failure", False),
    (
        re.compile(r"depends on a node named .{1,200} which was not found|depends on a source named"),
        "node_not_found",
        False,
    ),
    (
        re.compile(r"\bCould not find a version that satisfies\b|\bdbt deps\b|package-lock|packages\.yml"),
        "packages",
        False,
    ),
)
_AIRFLOW = (
    (re.compile(r"\bAirflowTaskTimeout\b|\bTimeout, PID: \d+|\bTask timed out\b"), "task_timeout"),
    (re.compile(r"\bAirflowSensorTimeout\b|\bSensor has timed out\b|\bSnap\. Time is OUT\b"), "sensor_timeout"),
    (re.compile(r"\bdagrun_timeout\b|\bDag ?Run timed out\b|\bDagRun .{0,100} timed out\b", re.I), "dagrun_timeout"),
    (
        re.compile(
            r"\bkilled externally\b|although the task says (?:it'?s|its) (?:queued|running)|"
            r"state attribute is (?:queued|running)",
            re.I,
        ),
        "killed_externally",
    ),
    (re.compile(r"\bzombie\b", re.I), "zombie"),
    (
        re.compile(
            r"\bheartbeat\b.{0,60}\b(?:timed? ?out|timeout|missed|stopped|failed|lost)\b|"
            r"\b(?:no|missed|lost|failed to) heartbeat|task_instance_heartbeat_timeout",
            re.I,
        ),
        "heartbeat_lost",
    ),
    (re.compile(r"\bProcess terminated by signal\b|\bterminated by signal\b", re.I), "process_signal"),
    (
        re.compile(r"\bReceived SIGTERM\b|\bTask received SIGTERM signal\b|\bAirflowTaskTerminated\b"),
        "sigterm_received",
    ),
    # the scheduler sets a run's unfinished task instances to skipped when its dagrun_timeout passes
    (re.compile(r"\bexternally set to skipped\b", re.I), "externally_skipped"),
    (re.compile(r"\bexternally set to (?:failed|success|up_for_retry|removed|None)\b", re.I), "externally_set"),
    (
        re.compile(r"\bCONNECTION_NOT_FOUND\b|\bconn_id\b.{0,80}\bis(?:n'?t| not) defined\b", re.I),
        "connection_not_found",
    ),
    (re.compile(r"\bVARIABLE_NOT_FOUND\b|\bVariable \S{1,200} does not exist\b"), "variable_not_found"),
    (re.compile(r"\bAirflowConfigException\b|\bnot found in config\b"), "config_exception"),
    (re.compile(r"\bBroken DAG\b|\bDAG import error\b", re.I), "broken_dag"),
    (
        re.compile(
            r"\bPod Launching failed\b|\bPod took longer than \d+ seconds to start\b|\bPodLaunchTimeoutException\b"
        ),
        "pod_launch_failed",
    ),
    (
        re.compile(r"\bhas not reached a terminal status\b|\bWaiter \S{1,80} failed: Max attempts exceeded\b"),
        "wait_exhausted",
    ),
    (re.compile(r"\bBash command failed\b|\bCommand exited with return code\b"), "command_failed"),
    (re.compile(r"\bPod returned a failure\b|\bPod .{0,120} returned a failure\b"), "pod_failed"),
)
_HOST = (
    re.compile(r"host='([^'\s]{1,200})', port=(\d{1,5})"),  # urllib3 pools
    re.compile(r"connection to server at \"([^\"\s]{1,200})\"[^,\n]{0,80}, port (\d{1,5})"),  # libpq 14+
    re.compile(
        r"(?:https?|postgres(?:ql)?|mysql|redis|amqp|mongodb|jdbc:\w{1,20})://(?:[^@/\s]{0,200}@)?([\w.\-]{1,200}|\[[0-9a-fA-F:]{2,40}\])(?::(\d{1,5}))?"
    ),
    re.compile(r"\b(localhost|127\.0\.0\.1|0\.0\.0\.0|::1)(?::(\d{1,5}))?\b"),
    re.compile(r"Could not connect to the endpoint URL: \"?https?://([^/\s\":]{1,200})"),
)
_UNIX_SOCKET = re.compile(
    r"connection to server on socket \"|\.s\.PGSQL\.\d+|/var/run/\S{1,100}\.sock|/tmp/\S{0,40}\.sock", re.I
)
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "0.0.0.0", "::1", "[::1]"})
_LIBRARY_PATH = re.compile(
    r"site-packages|dist-packages|/lib/python\d|/lib64/python\d|<frozen |^<|/usr/lib/jvm/|\\Lib\\"
)
_JVM_LIBRARY = re.compile(
    r"^(?:java|javax|jdk|sun|scala|kotlin|org\.apache|org\.postgresql|org\.eclipse|com\.amazonaws|software\.amazon|"
    r"com\.google|io\.netty|io\.grpc|py4j|com\.databricks|com\.fasterxml|com\.snowflake|net\.snowflake|"
    r"io\.delta|org\.slf4j|akka|okhttp3|com\.microsoft|reactor|org\.springframework|io\.trino|com\.zaxxer)\."
)
_DIGIT = re.compile(r"\d")
_BLANK_OR_SOURCE = re.compile(r"^\s*(?:\^+|~+|[\^~ ]+)\s*$")


# ---- parsing -----------------------------------------------------------------------------------
@dataclass
class _Exc:
    type: str
    message: str
    frames: list[Frame]
    caused_by: bool  # Java "Caused by:" (this one is the cause of the exception before it)
    lines: list[int]  # line numbers of its exception line and message continuation


def _to_text(raw: object) -> tuple[str, bool]:
    if raw is None:
        return "", False
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        truncated = len(data) > MAX_CHARS * 4
        text = data[-MAX_CHARS * 4 :].decode("utf-8", errors="replace")
    else:
        text = raw if isinstance(raw, str) else str(raw)
        truncated = False
    if len(text) > MAX_CHARS:
        text, truncated = text[-MAX_CHARS:], True
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n"), truncated


def _strip_prefix(line: str) -> str:
    """The line without log prefixes (timestamps, levels, {file.py:N}, "| ")."""
    stripped = line.strip()
    for _ in range(6):
        before = stripped
        for prefix in _PREFIXES:
            stripped = prefix.sub("", stripped, count=1)
        if stripped == before:
            break
    return stripped


def _is_exception_type(name: str) -> bool:
    if not name or name in _BARE_WORDS or _NOT_TYPES.search(name):
        return False
    last = name.rsplit(".", 1)[-1].rsplit("$", 1)[-1]
    if last in _KNOWN_BARE:
        return True
    if not last[:1].isupper():
        return False
    if last.endswith(_SUFFIXES) and len(last) > 5:
        return True
    # a dotted, package-qualified class name: psycopg2.errors.X, org.apache.spark.SparkException
    parts = name.split(".")
    return len(parts) >= 2 and parts[0][:1].islower() and all(p for p in parts)


def _frame_library(path: str) -> bool:
    return bool(_LIBRARY_PATH.search(path))


def _exception_line(line: str) -> tuple[str, str, bool, str] | None:
    """``(type, message, caused_by, body)`` when the line prints an exception, else None."""
    caused_by = bool(_CAUSED_BY.match(line))
    body = _CAUSED_BY.sub("", line, count=1) if caused_by else line
    stripped = _strip_prefix(body)
    match = _EXCEPTION_LINE.match(stripped) if stripped else None
    if match and _is_exception_type(match.group("type")):
        return match.group("type"), (match.group("msg") or "").strip(), caused_by, body
    return None


def _continues(last: _Exc, raw: str, number: int, continuation: int) -> bool:
    """Append a message's next line (libpq's DETAIL/HINT, Java's multi-line messages); False ends it.

    A blank line or a new log record ends the message; caret lines (Python 3.11's ^^^) are skipped.
    """
    body = raw.strip()
    stripped = _strip_prefix(raw)
    if not stripped:
        return False
    if _BLANK_OR_SOURCE.match(stripped):
        return True
    if continuation >= MAX_CONTINUATION or stripped != body or len(last.message) >= MAX_MESSAGE:
        return False
    last.message = f"{last.message}\n{stripped}" if last.message else stripped
    last.lines.append(number)
    return True


class _Scanner:
    """Walks the lines once, collecting exceptions (with their frames) and chain markers."""

    def __init__(self) -> None:
        self.tokens: list[_Exc | str] = []
        self.pending: list[Frame] = []  # Python frames come before the exception they lead to
        self.last: _Exc | None = None  # the exception whose message may continue on the next lines
        self.continuation = 0
        self.count = 0

    def line(self, number: int, line: str) -> None:
        if _PY_CAUSE in line or _PY_CONTEXT in line:
            self.tokens.append("cause" if _PY_CAUSE in line else "context")
            self.pending, self.last = [], None
        elif _TRACEBACK.search(line):
            self.pending, self.last = [], None
        elif not self._frame(line):
            self._other(number, line)

    def _frame(self, line: str) -> bool:
        frame = _PY_FRAME.match(line)
        if frame:
            path = frame.group(1)
            self.pending.append(Frame(path, int(frame.group(2)), frame.group(3), _frame_library(path)))
            self.last = None
            return True
        java = _JAVA_FRAME.match(line)
        if java:
            if self.last is not None and len(self.last.frames) < 200:
                function = java.group(1)
                self.last.frames.append(Frame(java.group(2), 0, function, bool(_JVM_LIBRARY.match(function))))
            self.continuation = MAX_CONTINUATION  # frames end a Java message
            return True
        return False

    def _other(self, number: int, line: str) -> None:
        found = _exception_line(line)
        if found:
            if self.count < MAX_EXCEPTIONS:
                exc = _Exc(found[0], found[1], self.pending, found[2], [number])
                self.tokens.append(exc)
                self.count += 1
                self.last, self.continuation, self.pending = exc, 0, []
            return
        if self.last is not None:
            if _continues(self.last, line, number, self.continuation):
                self.continuation += 1
            else:
                self.last = None


def _scan(lines: list[str]) -> list[_Exc | str]:
    """Tokens in text order: the exceptions, and the Python chain markers ("cause" / "context")."""
    scanner = _Scanner()
    for number, raw in enumerate(lines):
        scanner.line(number, raw[:MAX_LINE])
    return scanner.tokens


def _final_chain(tokens: list[_Exc | str]) -> tuple[list[tuple[_Exc, Link | None]], list[_Exc]]:
    """The chain that ended the text, outermost first, with each link; and the exceptions outside it.

    Python prints the root cause first and the outermost last, joined by markers; Java prints
    the outermost first and its causes after it as ``Caused by:``. Both become outermost-first.
    """
    excs = [t for t in tokens if isinstance(t, _Exc)]
    ends = [i for i, t in enumerate(tokens) if isinstance(t, _Exc) and not t.type.endswith("Warning")]
    if not ends:  # warnings do not end a task
        return [], excs
    chain: list[tuple[_Exc, Link | None]] = []
    index = ends[-1]
    link: Link | None = None
    while True:
        start = index
        while start > 0 and _caused_by(tokens[start]) and isinstance(tokens[start - 1], _Exc):
            start -= 1
        for position, token in enumerate(tokens[start : index + 1]):
            if isinstance(token, _Exc):
                chain.append((token, link if position == 0 else _LINKS["cause"]))
        marker = start - 1
        if marker >= 1 and tokens[marker] in ("cause", "context") and isinstance(tokens[marker - 1], _Exc):
            link = _LINKS[str(tokens[marker])]
            index = marker - 1
            continue
        break
    used = {id(exc) for exc, _ in chain}
    return chain, [e for e in excs if id(e) not in used]


_LINKS: dict[str, Link] = {"cause": "cause", "context": "context"}


def _caused_by(token: _Exc | str) -> bool:
    return isinstance(token, _Exc) and token.caused_by


def _embedded(exc: RaisedException) -> list[RaisedException]:
    """Exceptions quoted inside a message (requests/urllib3: ``Caused by NewConnectionError(...)``;
    py4j: ``An error occurred while calling o1.save.: java.lang.NoSuchMethodError: ...``)."""
    found: list[RaisedException] = []
    inline = _INLINE.search(exc.message[:MAX_MESSAGE])
    if inline and inline.group("type") != exc.type:
        found.append(RaisedException(inline.group("type"), inline.group("msg").strip(), (), "embedded"))
    for match in _EMBEDDED.finditer(exc.message[:MAX_MESSAGE]):
        name = match.group("type")
        if name.rsplit(".", 1)[-1] != exc.name and all(f.type != name for f in found):
            found.append(RaisedException(name, match.group("msg").strip(" '\""), (), "embedded"))
        if len(found) >= 4:
            break
    return found


def _groups(patterns: Iterable[re.Pattern[str]], line: str) -> Iterator[str]:
    for pattern in patterns:
        for match in pattern.finditer(line):
            yield match.group(1)


def _http_codes(line: str) -> Iterator[tuple[CodeKind, str]]:
    for value in _groups(_HTTP, line):
        yield "http", value


def _sql_codes(line: str) -> Iterator[tuple[CodeKind, str]]:
    for value in _groups(_SQLSTATE, line):
        code = value.upper()
        if code[:2] in SQLSTATE_CLASSES and code != "00000":
            yield "sqlstate", code
    for value in _groups(_MYSQL, line):
        if 1000 <= int(value) <= 4000:
            yield "mysql", value


def _errno_codes(line: str) -> Iterator[tuple[CodeKind, str]]:
    if _DIGIT.search(line):
        for value in _groups(_ERRNO, line):
            name = ERRNO_NUMBERS.get(int(value))
            if name:
                yield "errno", name
    for value in _groups((_ERRNO_NAME,), line):
        if value in ERRNO_NAMES:
            yield "errno", value
    lower = line.lower()
    for phrase, name in _STRERROR:
        if phrase in lower:
            yield "errno", name


def _signal_codes(line: str) -> Iterator[tuple[CodeKind, str]]:
    if "Killed" in line and _KILLED.match(_strip_prefix(line)):
        yield "signal", "SIGKILL"
    for value in _groups((_SIGNAL_NAME,), line):
        yield "signal", value
    for value in _groups((_SIGNAL_NUMBER,), line):
        name = SIGNAL_NUMBERS.get(abs(int(value)))
        if name:
            yield "signal", name


def _exit_codes(line: str) -> Iterator[tuple[CodeKind, str]]:
    for value in _groups(_EXIT, line):
        if value.isalpha():  # Negsignal.SIGKILL: the return code of a process killed by the signal
            yield "signal", f"SIG{value}"
            continue
        number = int(value)
        yield "exit_code", str(number)
        # a shell reports death by signal n as 128+n; Python's returncode is -n
        signal = SIGNAL_NUMBERS.get(-number if number < 0 else number - 128 if 128 < number < 160 else 0)
        if signal:
            yield "signal", signal


def _service_codes(line: str) -> Iterator[tuple[CodeKind, str]]:
    for value in _groups(_AWS, line):
        if not value.isdigit():
            yield "aws", value
        elif 400 <= int(value) <= 599:  # botocore names a bare HTTP status when the body had no code: (403)
            yield "http", value
    for value in _groups(_GRPC, line):
        status = GRPC_NUMBERS.get(int(value)) if value.isdigit() else value
        if status in GRPC_NAMES:
            yield "grpc", status
    for value in _groups(_VENDOR, line):
        if value.isdigit():
            yield "vendor", f"snowflake:{value}"
        else:
            yield ("grpc" if value in GRPC_NAMES else "vendor"), value


def _platform_codes(line: str) -> Iterator[tuple[CodeKind, str]]:
    for value in _groups(_K8S, line):
        canonical = next((r for r in K8S_REASONS if r.lower() == value.lower()), None)
        if canonical:
            yield "k8s", canonical
    for pattern, name in _K8S_EXTRA:
        if pattern.search(line):
            yield "k8s", name
    for pattern, name in _SPARK:
        if pattern.search(line):
            yield "spark", name
    yarn = _YARN_EXIT.search(line)
    if yarn and re.search(r"container|yarn", line, re.I):
        yield "spark", f"yarn_exit_{yarn.group(1)}"


def _tool_codes(line: str) -> Iterator[tuple[CodeKind, str]]:
    dbt_context = bool(_DBT_CONTEXT.search(line))
    for pattern, name, needs_context in _DBT:
        if (dbt_context or not needs_context) and pattern.search(line):
            yield "dbt", name
    for pattern, name in _AIRFLOW:
        if pattern.search(line):
            yield "airflow", name


_NUMERIC_EXTRACTORS: tuple[Callable[[str], Iterator[tuple[CodeKind, str]]], ...] = (_http_codes, _sql_codes)
_EXTRACTORS: tuple[Callable[[str], Iterator[tuple[CodeKind, str]]], ...] = (
    _errno_codes,
    _signal_codes,
    _exit_codes,
    _service_codes,
    _platform_codes,
    _tool_codes,
)


def _codes_in(line: str) -> Iterator[tuple[CodeKind, str]]:
    """Every code one line carries."""
    if _DIGIT.search(line):
        for numeric in _NUMERIC_EXTRACTORS:
            yield from numeric(line)
    for extractor in _EXTRACTORS:
        yield from extractor(line)


def _hosts(text: str) -> tuple[list[str], bool]:
    hosts: list[str] = []
    local = False
    for line in text.splitlines():
        line = line[:MAX_LINE]
        for pattern in _HOST:
            for match in pattern.finditer(line):
                host = match.group(1).lower()
                port = match.group(2) if match.lastindex and match.lastindex >= 2 else None
                if host in _LOCAL_HOSTS:
                    local = True
                value = f"{host}:{port}" if port else host
                if value not in hosts and len(hosts) < 20:
                    hosts.append(value)
        if _UNIX_SOCKET.search(line):
            local = True
    return hosts, local


def _to_public(exc: _Exc, link: Link | None) -> RaisedException:
    return RaisedException(exc.type, exc.message[:MAX_MESSAGE], tuple(exc.frames), link)


def parse(text: object) -> Facts:
    """Facts from any failure text; never raises (the worst input gives empty ``Facts``)."""
    try:
        return _parse(text)
    except Exception:  # a parser of arbitrary logs must not take the diagnosis down
        return Facts()


def _parse(raw: object) -> Facts:
    text, truncated = _to_text(raw)
    if not text.strip():
        return Facts(truncated=truncated)
    lines = text.split("\n")
    tokens = _scan(lines)
    chain_raw, others_raw = _final_chain(tokens)
    chain: list[RaisedException] = []
    chain_lines: set[int] = set()
    if len(chain_raw) > MAX_CHAIN:
        chain_raw = chain_raw[:8] + chain_raw[-(MAX_CHAIN - 8) :]
    for exc, link in chain_raw:
        public = _to_public(exc, link)
        chain.append(public)
        chain.extend(_embedded(public))
        chain_lines.update(exc.lines)
    codes: dict[tuple[str, str], bool] = {}
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        in_chain = number in chain_lines
        for kind, value in _codes_in(line[:MAX_LINE]):
            key = (kind, value)
            codes[key] = codes.get(key, False) or in_chain
    # google.api_core and snowflake put their code first in the message: "403 Forbidden ...", "250001: ..."
    for raised in chain:
        head = raised.message[:12]
        if raised.module.startswith(("google", "googleapiclient")) and re.match(r"[45]\d\d\b", head):
            codes[("http", head[:3])] = True
        snowflake_code = re.match(r"(\d{6})\b", head) if "snowflake" in raised.module else None
        if snowflake_code:
            codes[("vendor", f"snowflake:{snowflake_code.group(1)}")] = True
    chain_text = "\n".join(lines[i][:MAX_LINE] for i in sorted(chain_lines))
    hosts, local = _hosts(chain_text or "\n".join(lines[-50:]))
    return Facts(
        chain=tuple(chain),
        others=tuple(_to_public(e, None) for e in others_raw),
        codes=tuple(Code(kind, value, in_chain) for (kind, value), in_chain in codes.items()),  # type: ignore[arg-type]
        hosts=tuple(hosts),
        local_endpoint=local,
        truncated=truncated,
        chain_text=chain_text,
    )
