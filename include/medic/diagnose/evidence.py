"""What to embed and quote: the error, not the log around it.

A whole Airflow log wrapped around a traceback is mostly preamble; embeddings of it cannot
tell failure families apart (measured: cosine 0.910 within a family vs 0.909 across), while
embeddings of the extracted exception and error lines separate them (0.94 vs 0.64). So the
text given to the model is: the exception line, the lines that carry an error, and the user
frames, bounded to about one model window (256 word pieces).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from medic.diagnose.fingerprint import last_exception, user_frames

_ERROR_LINE = re.compile(
    r"(?i)(error|exception|fail|refused|denied|forbidden|unauthori[sz]ed|timed? ?out|timeout|killed|sigkill|"
    r"sigterm|oom|out of memory|exceeded|throttl|rate limit|too many|unavailable|not found|no such|"
    r"does not exist|invalid|cannot|could not|unable|exit code|return code|evicted|lost|deadlock|"
    r"serializ|conflict|quota|permission|traceback|\b[45]\d\d\b)"
)
_NOISE = re.compile(r"^\s*(File \"|at [\w.$]+\(|\^+\s*$|~+\s*$)")
_TIMESTAMP_PREFIX = re.compile(
    r"^\s*(\[?\d{4}-\d{2}-\d{2}[ T,][\d:.,]+(?:\s*(?:UTC|Z|[+-]\d{2}:?\d{2}))?\]?\s*|\d{2}:\d{2}:\d{2}\s+)"
)
MAX_CHARS = 1200


@dataclass
class Evidence:
    exception_type: str | None
    message: str
    lines: list[str] = field(default_factory=list)  # quotable error lines, oldest first
    frames: list[str] = field(default_factory=list)

    def embedding_text(self, limit: int = MAX_CHARS) -> str:
        parts = []
        if self.exception_type or self.message:
            parts.append(f"{self.exception_type or 'Error'}: {self.message}".strip())
        parts.extend(line for line in self.lines if line not in parts)
        if self.frames:
            parts.append("in " + " > ".join(self.frames))
        text = "\n".join(parts)
        return text[:limit]


def _strip(line: str) -> str:
    return _TIMESTAMP_PREFIX.sub("", line).strip()


def extract(text: str, exception_type: str | None = None, message: str = "", max_lines: int = 8) -> Evidence:
    """Evidence from any failure text (a log excerpt, a traceback, or both joined)."""
    found_type, found_message = last_exception(text)
    exception_type = exception_type or found_type
    message = (message or found_message or "").strip()
    lines: list[str] = []
    for raw in text.splitlines():
        if _NOISE.match(raw) or not _ERROR_LINE.search(raw):
            continue
        line = _strip(raw)[:300]
        if line and line not in lines:
            lines.append(line)
    if not lines and text.strip():
        lines = [_strip(line)[:300] for line in text.strip().splitlines()[-3:] if line.strip()]
    return Evidence(
        exception_type, message.splitlines()[0][:500] if message else "", lines[-max_lines:], user_frames(text)
    )
