"""A failure's signature: what stays the same when the same fault happens again.

``exception type + message template + the frames of user code``, where the template masks
what changes between reruns (timestamps, ids, numbers, hosts, paths, hex). The fingerprint
is a short hash of the signature; it groups failures into incidents.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_MASKS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\[REDACTED:[a-z_]+\]"), "<secret>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"), "<ts>"),
    (
        re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
        "<uuid>",
    ),
    (re.compile(r"\b(?:manual|scheduled|asset_triggered|backfill)__[^\s'\"]+"), "<run_id>"),
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"]+"), "<url>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"(?<![\w.])(?:/[\w.\-]+){2,}/?"), "<path>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b[0-9a-fA-F]{12,}\b"), "<hex>"),
    (re.compile(r"\b(?:[a-z0-9\-]+\.)+(?:com|net|org|io|internal|local|cloud|svc|dev)(?::\d+)?\b"), "<host>"),
    (re.compile(r"(?<![\w.])\d+(?:\.\d+)?"), "<n>"),  # 30s, 5 MB, 404: units stay, digits go
    (re.compile(r"\s+"), " "),
]

_FRAME = re.compile(r'File "(?P<file>[^"]+)", line \d+, in (?P<func>[\w<>.]+)')
_LIBRARY_PATH = re.compile(r"(site-packages|dist-packages|/lib/python\d|<frozen )")
_SUFFIXES = r"(?:Error|Exception|Exit|Interrupt|Warning|Timeout|Failure|Fault|Refused|Denied|NotFound|Conflict)"
# `pkg.module.Name: message` (any dotted name whose last part is capitalised) or a bare `NameError: ...`,
# at the start of a line or after a log prefix ("ERROR - ", "| ", "Caused by: ").
_EXCEPTION_LINE = re.compile(
    r"(?:^|(?<=[\s|(>-]))(?P<type>(?:[a-z_][\w]*\.)+[A-Z][\w$]*|[A-Z][\w]*" + _SUFFIXES + r")"
    r": (?P<msg>[^\n]*)$",
    re.M,
)
_NOT_EXCEPTIONS = re.compile(r"^(?:https?|file|s3|gs|hdfs)$|\.(?:py|java|scala|sql|log)$")


def message_template(message: str, limit: int = 300) -> str:
    text = message.strip().splitlines()[0] if message.strip() else ""
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text.strip()[:limit]


def user_frames(traceback_text: str, keep: int = 3) -> list[str]:
    """The innermost frames outside installed libraries, as ``file.py:function``."""
    frames = []
    for match in _FRAME.finditer(traceback_text or ""):
        path = match.group("file")
        if _LIBRARY_PATH.search(path):
            continue
        frames.append(f"{path.rsplit('/', 1)[-1]}:{match.group('func')}")
    return frames[-keep:]


def last_exception(text: str) -> tuple[str | None, str]:
    """The last ``Type: message`` line in a traceback or log, for records without an object."""
    for match in reversed(list(_EXCEPTION_LINE.finditer(text or ""))):
        if not _NOT_EXCEPTIONS.search(match.group("type")):
            return match.group("type"), match.group("msg").strip()
    return None, ""


def last_error_line(text: str) -> str:
    """The last line that says something went wrong; the template of last resort."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for line in reversed(lines):
        if re.search(r"(?i)error|exception|fail|denied|refused|killed|timed? ?out|not found|exceeded", line):
            return line
    return lines[-1] if lines else ""


@dataclass(frozen=True)
class Signature:
    exception_type: str
    template: str
    frames: tuple[str, ...]

    @property
    def text(self) -> str:
        frames = " > ".join(self.frames)
        return f"{self.exception_type}: {self.template}" + (f" @ {frames}" if frames else "")

    @property
    def specific(self) -> bool:
        """False when nothing identifying was found: such signatures must not match each other."""
        return self.exception_type != "UnknownError" or bool(self.template) or bool(self.frames)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


def signature(exception_type: str | None, message: str, traceback_text: str = "") -> Signature:
    if not exception_type or not message:
        found_type, found_message = last_exception(traceback_text)
        exception_type = exception_type or found_type
        message = message or found_message
    if not exception_type and not message:
        message = last_error_line(traceback_text)
    short_type = (exception_type or "UnknownError").rsplit(".", 1)[-1]
    return Signature(short_type, message_template(message or ""), tuple(user_frames(traceback_text)))
