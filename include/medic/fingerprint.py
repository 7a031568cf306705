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
_EXCEPTION_LINE = re.compile(
    r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Timeout|"
    r"Failure|Fault|Refused|Denied|NotFound|Invalid\w*)):\s?(?P<msg>.*)$",
    re.M,
)


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
    matches = list(_EXCEPTION_LINE.finditer(text or ""))
    if not matches:
        return None, ""
    last = matches[-1]
    return last.group("type"), last.group("msg")


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
    def fingerprint(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


def signature(exception_type: str | None, message: str, traceback_text: str = "") -> Signature:
    if not exception_type or not message:
        found_type, found_message = last_exception(traceback_text)
        exception_type = exception_type or found_type
        message = message or found_message
    short_type = (exception_type or "UnknownError").rsplit(".", 1)[-1]
    return Signature(short_type, message_template(message or ""), tuple(user_frames(traceback_text)))
