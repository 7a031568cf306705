"""Replace secrets in failure text with typed placeholders before anything keeps it.

Runs inside the failing task's process, so it is pure regex work: no I/O, bounded input.
Placeholders say what was removed (``[REDACTED:password]``) so a diagnosis can still reason
about "the password was wrong" without ever seeing it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_RULES: list[tuple[str, re.Pattern[str], str]] = [
    (
        "private_key",
        re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S),
        "[REDACTED:private_key]",
    ),
    # scheme://user:password@host  (database URIs, Airflow connection URIs, broker URLs)
    (
        "uri_password",
        re.compile(r"(?P<pre>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@'\"]*:)(?P<secret>[^\s@/'\"]+)(?=@)"),
        r"\g<pre>[REDACTED:password]",
    ),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}"), "[REDACTED:jwt]"),
    (
        "bearer",
        re.compile(r"(?i)(?P<pre>\b(?:bearer|token)\s+)(?P<secret>[A-Za-z0-9._~+/\-]{12,}=*)"),
        r"\g<pre>[REDACTED:token]",
    ),
    (
        "aws_access_key",
        re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b"),
        "[REDACTED:aws_access_key]",
    ),
    ("gcp_api_key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"), "[REDACTED:gcp_api_key]"),
    (
        "slack_or_github_token",
        re.compile(r"\b(?:xox[abposr]-[A-Za-z0-9\-]{10,}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
        "[REDACTED:token]",
    ),
    (
        "azure_key",
        re.compile(r"(?i)(?P<pre>\b(?:AccountKey|SharedAccessKey|sig)=)(?P<secret>[^;&\s'\"]+)"),
        r"\g<pre>[REDACTED:azure_key]",
    ),
    # key=value / key: value / "key": "value" pairs whose key names a secret
    (
        "secret_pair",
        re.compile(
            r"(?i)(?P<pre>[\"']?\b[\w.\-]*(?:password|passwd|pwd|secret|token|api[_\-]?key|apikey|"
            r"access[_\-]?key|private[_\-]?key|client[_\-]?secret|credentials?|auth)[\w.\-]*[\"']?"
            r"\s*(?:=|:|=>)\s*)(?P<q>[\"']?)(?P<secret>(?!\[REDACTED)[^\s\"',;&}]{3,})(?P=q)"
        ),
        r"\g<pre>\g<q>[REDACTED:secret]\g<q>",
    ),
]


def scrub(text: str | None, extra_secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with every recognised secret, and every literal in ``extra_secrets``
    (values of sensitive Variables and Connection passwords), replaced by a placeholder."""
    if not text:
        return text or ""
    for value in sorted({s for s in extra_secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, "[REDACTED:sensitive_value]")
    for _name, pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text
