"""Replace secrets in failure text with typed placeholders before anything keeps it.

Runs inside the failing task's process (capture has a 3 s budget), so it is regex work only:
no I/O, and the input is cut into bounded chunks so work grows linearly with its size.
Placeholders say what was removed (``[REDACTED:password]``) so a diagnosis can still reason
about "the password was wrong" without ever seeing it.

Three layers, in this order:

1. **Registered values**: every value Airflow's secrets masker knows in this process (the
   passwords and sensitive extras of Connections, sensitive Variables the task fetched) and the
   caller's ``extra_secrets``. First, because a value is only recognisable while it is whole:
   a pattern that removed part of it first would leave the rest for nobody to find.
2. **medic's rules**: shapes that carry a secret by position rather than by look: URIs with
   user info (passwords with ``@`` and ``/`` included), Oracle ``user/pass@``, ODBC ``PWD={..}``,
   command lines (``curl -u``, ``mysqldump -p``, ``sshpass -p``, ``docker login -p``, ``--password``),
   headers (``Authorization``, ``Cookie``), auth tuples, ``.netrc``, SQL ``IDENTIFIED BY``, XML
   elements, key/value pairs in every quoting (escaped JSON, bytes reprs, env lines) whose key
   names a secret, and vendor token formats detect-secrets lacks (``sk-proj-``, ``sk-ant-``, ``hf_``,
   ``dapi``, ``xapp-``, Google, Vault, Atlassian ...).
3. **detect-secrets**: its vendor plugins (AWS, Azure, basic auth, JWT, Slack, Stripe, GitHub,
   GitLab, OpenAI, npm, SendGrid, Telegram, Twilio, Discord, PyPI, ...), its keyword detector,
   and its entropy measure for random-looking values in key/value context, so medic does not
   hand-maintain every vendor's format.

Precision matters as much: a key is secret when the *thing it names* is a secret
(``password``, ``db_pass``, ``aws_secret_access_key``), not when a secret word appears inside a
longer name (``completion_tokens``, ``token_url``, ``NoCredentialsError``), so the evidence a
diagnosis reads ("Unable to locate credentials") stays intact.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.cloudant import CloudantDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString, HexHighEntropyString
from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import KeywordDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.softlayer import SoftlayerDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

if TYPE_CHECKING:
    from detect_secrets.plugins.base import RegexBasedDetector

REGISTERED = "[REDACTED:sensitive_value]"
_MARK = "[REDACTED"

#: Text is scrubbed in chunks of about this many characters, cut at line ends, so the work is
#: linear in the input whatever it holds; the keyword detector looks at windows of a line.
CHUNK_CHARS = 64 * 1024
_WINDOW = 4096


def placeholder(kind: str) -> str:
    return f"[REDACTED:{kind}]"


# ---- which names are secret -------------------------------------------------------------------
#: A name whose last word is one of these names a secret (``db_pass``, ``X-Amz-Security-Token``).
SECRET_WORDS = frozenset(
    {
        "password", "passwd", "pass", "pwd", "pw", "passphrase", "passcode", "secret", "token",
        "apikey", "credential", "credentials", "creds", "cookie", "sessionid", "signature", "sig",
        "jwt", "authorization", "auth", "bearer", "psk", "sas", "pat", "contraseña", "contrasena",
        "passwort", "senha", "wachtwoord",
    }
)  # fmt: skip
#: ``key`` is a secret only with one of these before it (``api_key``, ``AccountKey``); a
#: ``partition_key``, ``s3_key`` or ``primary_key`` is not.
KEY_QUALIFIERS = frozenset(
    {
        "api", "access", "secret", "private", "account", "shared", "client", "master", "encryption",
        "signing", "sign", "fernet", "app", "auth", "service", "subscription", "storage", "license",
        "hmac", "webhook", "write", "admin", "root", "consumer", "partner", "integration", "developer",
        "sas", "jwt", "session", "crypt", "decryption", "kms", "ingest", "ingestion",
    }
)  # fmt: skip
#: Single-word names that end in a secret (``PGPASSWORD``, ``csrftoken``, ``clientsecret``).
_COMPOUND_ENDS = (
    "password", "passwd", "secret", "token", "apikey", "accesskey", "secretkey", "privatekey",
    "accountkey", "passphrase", "credentials", "dbpass", "userpass", "rootpass", "adminpass",
)  # fmt: skip
#: Words that may follow the secret word and still name the secret itself (``SecretString``,
#: ``password_b64``); any other trailing word names something about it (``token_url``).
_VALUE_SUFFIXES = frozenset(
    {
        "value", "val", "string", "str", "b64", "base64", "hex", "raw", "enc", "encrypted", "plain",
        "plaintext", "data", "bytes", "text", "hash", "hashed", "old", "new", "current", "prev",
        "previous", "header", "1", "2", "3", "v1", "v2",
    }
)  # fmt: skip
#: ``next_token`` and friends are pagination cursors, not credentials.
_CURSOR_WORDS = frozenset({"next", "continuation", "page", "pagination", "resume", "cursor", "sync", "cancellation"})
#: Hadoop-style names carry the secret word in the middle (``fs.azure.account.key.<acct>.dfs...``).
_INFIX_SECRET = re.compile(r"(?:^|[._])(?:account[._]key|sas[._]token|oauth2?[._]client[._]secret)[._]")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_ALNUM = re.compile(r"[\W_]+")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def key_words(name: str) -> list[str]:
    """``X-Amz-Security-Token`` -> ``['x', 'amz', 'security', 'token']``; camelCase too."""
    return [w for w in _NON_ALNUM.split(_CAMEL.sub("_", name).lower()) if w]


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Whether a key or flag names a secret, judged by its words (see the module docstring)."""
    words = key_words(name)
    if not words:
        return False
    if _INFIX_SECRET.search(name.lower()):
        return True
    for index in range(len(words) - 1, -1, -1):
        word = words[index]
        after = words[index + 1 :]
        if any(w not in _VALUE_SUFFIXES for w in after):
            return False
        before = words[:index]
        if word in SECRET_WORDS:
            return not (word == "token" and before and before[-1] in _CURSOR_WORDS)
        if word in ("key", "keys"):
            return any(w in KEY_QUALIFIERS for w in before)
        if len(words) == 1 and word.endswith(_COMPOUND_ENDS):
            return True
    return False


@functools.lru_cache(maxsize=1)
def _airflow_sensitive_fields() -> frozenset[str]:
    """Airflow's sensitive field names: its defaults plus ``[core] sensitive_var_conn_names``."""
    try:
        from airflow.sdk._shared.secrets_masker import DEFAULT_SENSITIVE_FIELDS  # noqa: PLC0415 - see _maskers
    except ImportError:  # pragma: no cover - an Airflow without the task SDK
        return frozenset({"password", "passwd", "secret", "token", "api_key", "apikey", "private_key"})
    fields = set(DEFAULT_SENSITIVE_FIELDS)
    try:
        from airflow.sdk.configuration import conf  # noqa: PLC0415 - see _maskers

        extra = conf.get("core", "sensitive_var_conn_names", fallback="") or ""
    except Exception:  # no configuration in this process: the defaults still apply
        extra = ""
    fields |= {f.strip().lower() for f in extra.split(",") if f.strip()}
    return frozenset(fields)


@functools.lru_cache(maxsize=4096)
def is_sensitive_key(name: str) -> bool:
    """A key of structured data (conf, params, facets, XCom) whose value must be hidden: the way
    Airflow decides (``should_hide_value_for_key``: a sensitive field name inside the key) or
    medic's word rule (which also knows ``db_pass``, ``AccountKey``, ``x-api-key``). Unlike
    Airflow, ``[core] hide_sensitive_var_conn_fields = False`` does not turn this off."""
    normalized = re.sub(r"\W+", "_", name.strip().lower())
    return any(field in normalized for field in _airflow_sensitive_fields()) or is_secret_name(name)


# ---- which values are not secrets ---------------------------------------------------------------
_NOT_SECRET = frozenset(
    {
        "yes", "no", "true", "false", "none", "null", "nil", "undefined", "empty", "required",
        "optional", "missing", "invalid", "expired", "incorrect", "wrong", "redacted", "hidden",
        "masked", "unset", "set", "provided", "supplied", "ok", "n/a", "na", "basic", "bearer",
        "digest", "oauth", "oauth2", "kerberos", "ldap", "saml", "sso", "iam", "ntlm", "negotiate",
        "anonymous", "default", "auto", "env", "vault", "file", "prompt", "token", "password", "key",
        "auth", "not", "is", "was", "has", "must", "should", "for", "the", "and", "or", "of", "in", "on",
        "to", "from", "with", "without", "enabled", "disabled", "off", "stdin", "-",
    }
)  # fmt: skip
_TEMPLATE = re.compile(
    r"^(?:\*{2,}[^\w]*|x{4,}|X{4,}|\.{3,}|<[^>]*>?|\$\{[^}]*\}?|\$[A-Za-z_]\w*|\{\{.*|\{[^{}]*\}|%\(\w+\)s|%s|\?|:\w+)$"
)
_PATH_VALUE = re.compile(r"^(?:~|\.{1,2})?/[\w.\-]+(?:/[\w.\-]+)+$")  # a file (credentials=/opt/sa.json)
_CODE_VALUE = re.compile(r"^[a-z_][a-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")  # conn.password, self._token


def _worth_hiding(value: str, *, following: str = "", key: str = "") -> bool:
    """Whether a value under a secret name is a value at all: not a template, a mask, a word
    like YES or None, a file path, or Python code passing a variable on (``password=password``,
    ``password=db_password``, ``password=conn.password``, ``token=get_token()``)."""
    value = value.strip()
    if len(value) < 3 or _MARK in value or value.lower() in _NOT_SECRET or _TEMPLATE.match(value):
        return False
    if following[:1] in ("(", "[") or _CODE_VALUE.match(value) or _PATH_VALUE.match(value):
        return False
    if not re.fullmatch(r"[A-Za-z_]\w*", value):
        return True
    return not (value.lower() == key.lower() or ("_" in value and is_secret_name(value)))


def _entropy(value: str) -> float:
    counts: dict[str, int] = {}
    for char in value:
        counts[char] = counts.get(char, 0) + 1
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def looks_random(value: str, min_length: int = 16) -> bool:
    """A token-shaped value with no keyword near it: long, mixed, high entropy."""
    if len(value) < min_length or _MARK in value:
        return False
    classes = sum(bool(re.search(p, value)) for p in ("[a-z]", "[A-Z]", "[0-9]"))
    if classes < 2 or re.fullmatch(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", value
    ):
        return False
    return _entropy(value) >= (3.0 if set(value) <= _HEX_DIGITS else 3.3)


# ---- layer 1: what the task registered ------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _maskers() -> list[Callable[..., Any]]:
    """The ``redact`` of each secrets masker this process has: the task SDK's (what a task's
    hooks register) and airflow-core's (what the scheduler and api-server register).

    Airflow is imported here, on first use, not with this module: importing it takes seconds,
    and ``medic scrub`` (a fresh process, nothing registered) never needs it."""
    found: list[Callable[..., Any]] = []
    try:
        from airflow.sdk.log import redact as sdk_redact  # noqa: PLC0415 - Airflow on first use only

        found.append(sdk_redact)
    except ImportError:  # pragma: no cover - an Airflow without the task SDK
        pass
    try:
        from airflow._shared.secrets_masker import redact as core_redact  # noqa: PLC0415 - as above

        found.append(core_redact)
    except ImportError:  # pragma: no cover - the task SDK without airflow-core
        pass
    return found


def mask_registered(text: str, extra_secrets: Iterable[str] = ()) -> str:
    """Replace the literal values in ``extra_secrets`` and every value Airflow's masker knows."""
    for value in sorted({s for s in extra_secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, REGISTERED)
    for redact in _maskers():
        try:
            masked = redact(text, replacement=REGISTERED)
        except Exception:  # a masker problem must not cost the failure text; later layers still run
            continue
        if isinstance(masked, str):
            text = masked
    return text


# ---- layer 2: medic's rules -----------------------------------------------------------------------
_SHELL_WORD = r"(?P<pw>'[^'\n]*'|\"[^\"\n]*\"|[^\s'\"]+)"


class Rule(NamedTuple):
    """A pattern and its replacement; it runs only on text holding one of its ``needles`` (a
    plain substring test is far cheaper than a regex scan), lower-cased when ``ci``."""

    name: str
    pattern: re.Pattern[str]
    replacement: str | Callable[[re.Match[str]], str]
    needles: tuple[str, ...] = ()
    ci: bool = False

    def apply(self, text: str, lowered: str) -> str:
        haystack = lowered if self.ci else text
        if self.needles and not any(needle in haystack for needle in self.needles):
            return text
        return self.pattern.sub(self.replacement, text)


def _keep_group(group: str, kind: str, check: Callable[[str], bool] | None = None) -> Callable[[re.Match[str]], str]:
    """A replacement that swaps only ``group`` of the match for a placeholder."""

    def replace(match: re.Match[str]) -> str:
        value = match.group(group)
        if value is None or (check is not None and not check(value)) or _MARK in value:
            return match.group(0)
        start, end = match.span(group)
        base = match.start(0)
        whole = match.group(0)
        return whole[: start - base] + placeholder(kind) + whole[end - base :]

    return replace


def _uri(match: re.Match[str]) -> str:
    """``scheme://user:pass@host``: the password runs to the *last* ``@`` that a host follows, so
    passwords holding ``@`` or ``/`` go whole; ``scheme://TOKEN@host`` hides a random user part."""
    scheme, rest = match.group("scheme"), match.group("rest")
    at = len(rest)
    while True:
        at = rest.rfind("@", 0, at)
        if at <= 0:
            return match.group(0)
        if _URI_HOST.match(rest, at + 1):
            break
    userinfo, tail = rest[:at], rest[at:]
    if ":" in userinfo and "/" not in userinfo.split(":", 1)[0]:
        user, password = userinfo.split(":", 1)
        if not password or _MARK in password or re.match(r"\d{1,5}(?:/|$)", password):
            return match.group(0)  # host:port/path@..., not credentials
        return f"{scheme}{user}:{placeholder('password')}{tail}"
    if "/" in userinfo or ":" in userinfo:
        return match.group(0)  # an "@" in the path, not user info
    if looks_random(userinfo) or re.match(r"(?:gh[pousr]_|github_pat_|glpat-|pypi-|x-oauth)", userinfo):
        return f"{scheme}{placeholder('token')}{tail}"
    return match.group(0)


_URI_HOST = re.compile(r"[A-Za-z0-9\[][A-Za-z0-9.\-_\[\]:%]*(?:[/?#;,)\]]|$)")


def _oracle(match: re.Match[str]) -> str:
    """``user/pass@host:port`` and ``sqlplus user/pass@alias``: only with an Oracle-like context
    (a port, ``//host``, ``thin:``, ``sqlplus``, ``connect``), so ``library/python@sha256:`` stays."""
    if not (match.group("ctx") or match.group("port") or match.group("host").startswith("//")):
        return match.group(0)
    return _keep_group("pw", "password", _worth_hiding)(match)


def _flag(match: re.Match[str]) -> str:
    """``--password X``, ``--api-key=X``, ``--conn-password 'X'``."""
    if not is_secret_name(match.group("flag")):
        return match.group(0)
    return _keep_group("val", "secret", _worth_hiding)(match)


def _xml(match: re.Match[str]) -> str:
    local = match.group("tag").rsplit(":", 1)[-1]
    if not is_secret_name(local):
        return match.group(0)
    return _keep_group("val", "secret", _worth_hiding)(match)


def _named_value(match: re.Match[str]) -> str:
    """``{"name": "DB_PASSWORD", "value": "..."}`` (Kubernetes env, ECS) and ``key="X" value="..."``."""
    if not is_secret_name(match.group("name")):
        return match.group(0)
    return _keep_group("val", "secret", _worth_hiding)(match)


def _named_value_either(match: re.Match[str]) -> str:
    if match.group("name") is not None:
        return _named_value(match)
    if not is_secret_name(match.group("name2")):
        return match.group(0)
    return _keep_group("val2", "secret", _worth_hiding)(match)


def _variables_set(match: re.Match[str]) -> str:
    """``airflow variables set partner_api_token VALUE``: hidden when the name is sensitive."""
    if not is_sensitive_key(match.group("key").strip("'\"")):
        return match.group(0)
    return _keep_group("val", "secret", _worth_hiding)(match)


def _phrase(match: re.Match[str]) -> str:
    """``token abc...``: a keyword, a space and a random-looking value (no separator)."""
    return _keep_group("val", "token", looks_random)(match)


#: Vendor formats with no keyword near them; each prefix is specific enough to need no context.
_VENDOR_TOKENS: list[tuple[str, tuple[str, ...], str]] = [
    ("api_key", ("sk-",), r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}"),  # OpenAI, project / service keys
    ("api_key", ("sk-ant-",), r"\bsk-ant-(?:api|admin|sid)\d{2}-[A-Za-z0-9_\-]{20,}"),  # Anthropic
    ("api_key", ("sk-",), r"\bsk-[A-Za-z0-9]{32,}\b"),  # OpenAI, legacy
    ("api_key", ("k_live_", "k_test_"), r"\b[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}"),  # Stripe (any length)
    ("secret", ("whsec_",), r"\bwhsec_[A-Za-z0-9+/=]{20,}"),  # Stripe / Svix webhook signing secret
    ("token", ("hf_",), r"\bhf_[A-Za-z0-9]{30,}"),  # Hugging Face
    ("token", ("dapi",), r"\bdapi[0-9a-f]{32}(?:-\d+)?\b"),  # Databricks
    (
        "token",
        ("glpat-", "gldt-", "glft-", "glsoat-", "glrt-", "glcbt-", "glptt-", "glagent-", "gloas-", "glimt-", "glsa-"),
        r"\bgl(?:pat|dt|ft|soat|rt|cbt|ptt|agent|oas|imt|sa)-[A-Za-z0-9_\-]{20,}",
    ),  # GitLab
    ("token", ("npm_",), r"\bnpm_[A-Za-z0-9]{36}\b"),  # npm
    ("api_key", ("SG.",), r"\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}"),  # SendGrid
    ("token", ("xox",), r"\bxox[abposre]-[A-Za-z0-9\-]{10,}"),  # Slack
    ("token", ("xapp-",), r"\bxapp-\d-[A-Za-z0-9\-]{20,}"),  # Slack app-level
    (
        "token",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})",
    ),  # GitHub
    ("token", ("pypi-",), r"\bpypi-AgE[A-Za-z0-9_\-]{50,}"),  # PyPI
    ("token", ("ya29.",), r"\bya29\.[A-Za-z0-9_\-]{20,}"),  # Google OAuth access token
    ("secret", ("GOCSPX-",), r"\bGOCSPX-[A-Za-z0-9_\-]{20,}"),  # Google OAuth client secret
    ("token", ("1//0",), r"(?<![\w/])1//0[A-Za-z0-9_\-]{30,}"),  # Google OAuth refresh token
    ("gcp_api_key", ("AIza",), r"\bAIza[0-9A-Za-z_\-]{35}\b"),  # Google API key
    (
        "aws_access_key",
        ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA", "ABIA", "ACCA", "A3T"),
        r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b",
    ),
    ("token", ("hvs.", "hvb.", "hvr."), r"\bhv[sbr]\.[A-Za-z0-9_\-]{20,}"),  # HashiCorp Vault
    ("token", ("ATATT3",), r"\bATATT3[A-Za-z0-9_\-=]{30,}"),  # Atlassian API token
    ("token", ("shpat_", "shpss_", "shpca_", "shppa_"), r"\bshp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}\b"),  # Shopify
    ("token", ("dop_v1_", "doo_v1_", "dor_v1_"), r"\bdo[por]_v1_[a-f0-9]{64}\b"),  # DigitalOcean
    ("token", ("glsa_", "glc_"), r"\bgl(?:sa|c)_[A-Za-z0-9_+/=]{32,}"),  # Grafana
    ("api_key", ("NRAK-",), r"\bNRAK-[A-Z0-9]{27}\b"),  # New Relic
    ("api_key", ("PMAK-",), r"\bPMAK-[a-f0-9]{24}-[a-f0-9]{34}\b"),  # Postman
    ("token", ("dp.",), r"\bdp\.(?:st|ct|sa|scim|audit)\.[A-Za-z0-9_\-]{30,}"),  # Doppler
    ("api_key", ("lin_api_",), r"\blin_api_[A-Za-z0-9]{30,}"),  # Linear
    ("token", ("secret_", "ntn_"), r"\b(?:secret|ntn)_[A-Za-z0-9]{43,}\b"),  # Notion
    ("private_key", ("AGE-SECRET-KEY-",), r"\bAGE-SECRET-KEY-1[A-Z0-9]{50,}"),  # age
    (
        "secret",
        ("Q~",),
        r"(?<![\w~.\-])[A-Za-z0-9_~.\-]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}(?![\w~.\-])",
    ),  # Entra ID client secret
    ("api_key", ("key-",), r"\bkey-[0-9a-f]{32}\b"),  # Mailgun
    ("token", ("k.eyJ",), r"\b[ps]k\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+"),  # Mapbox
    ("token", (":AA",), r"(?<![\w:])\d{8,10}:AA[A-Za-z0-9_\-]{33}\b"),  # Telegram bot
    ("jwt", ("eyJ",), r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}"),
]

_RULES: list[Rule] = [
    Rule(
        "private_key",
        re.compile(
            r"-----BEGIN (?P<kind>[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----.*?(?:-----END (?P=kind)-----|\Z)"
            r"|PuTTY-User-Key-File-\d+:.*?(?:Private-MAC:[ \t]*\S+|\Z)",
            re.S,
        ),
        placeholder("private_key"),
        ("PRIVATE KEY", "PuTTY-User-Key-File-"),
    ),
    Rule(
        "webhook",
        re.compile(
            r"(?P<pre>https://(?:hooks\.slack\.com/(?:services|workflows|triggers)/|(?:ptb\.|canary\.)?discord(?:app)?"
            r"\.com/api/webhooks/\d+/|[\w.\-]+\.webhook\.office\.com/webhookb2/|outlook\.office\.com/webhook/))"
            r"[^\s'\"<>\\]+"
        ),
        r"\g<pre>" + placeholder("webhook"),
        ("hooks.slack.com", "/api/webhooks/", ".webhook.office.com", "outlook.office.com/webhook"),
    ),
    Rule(
        "telegram",
        re.compile(r"(?P<pre>api\.telegram\.org/(?:file/)?bot)[^/\s'\"]+"),
        r"\g<pre>" + placeholder("token"),
        ("api.telegram.org",),
    ),
    # Authorization headers: the scheme stays, everything after it goes (Digest and SigV4 carry spaces)
    Rule(
        "authorization",
        re.compile(
            r"(?i)(?P<pre>\b(?:proxy-)?authorization(?:\\?[\"'])?[ \t]*[:=][ \t]*(?:[bfr]{0,2}(?P<q>\\?[\"']))?[ \t]*"
            r"(?:(?:Basic|Bearer|Token|Digest|Negotiate|NTLM|ApiKey|SSWS|OAuth|GenieKey|Key|HMAC-SHA256|"
            r"SharedKey|SharedAccessSignature|AWS4-HMAC-SHA256|AWS)[ \t]+)?)"
            r"(?P<val>(?(q)(?:(?!(?P=q)).){1,4096}|[^'\"\\\n]{1,4096}))"
        ),
        _keep_group("val", "token", _worth_hiding),
        ("authorization",),
        ci=True,
    ),
    Rule(
        "cookie",
        re.compile(
            r"(?i)(?P<pre>\b(?:set-)?cookie(?:\\?[\"'])?[ \t]*[:=][ \t]*(?:[bfr]{0,2}(?P<q>\\?[\"']))?)"
            r"(?P<val>(?(q)(?:(?!(?P=q)).){1,8192}|[^'\"\\\n]{1,8192}))"
        ),
        _keep_group("val", "cookie", _worth_hiding),
        ("cookie",),
        ci=True,
    ),
    Rule(
        "uri",
        re.compile(
            r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]{0,30}://)"
            r"(?P<rest>(?:(?![;,][A-Za-z][A-Za-z0-9+.\-]{0,30}://)[^\s'\"<>`\\]){1,2048})"
        ),
        _uri,
        ("://",),
    ),
    Rule(
        "oracle",
        re.compile(
            r"(?P<ctx>\bthin:(?:@)?|\bsqlplus(?:[ \t]+-\S+)*[ \t]+|\b(?i:connect)[ \t]+)?"
            r"(?<![\w/.\-@])[A-Za-z_][\w$#]{0,63}/(?P<pw>[^\s/@'\"]{1,128})"
            r"@(?P<host>//[\w.\-]+|[A-Za-z][\w.\-]*)(?P<port>:\d{2,5}(?![\w.]))?"
        ),
        _oracle,
        ("@",),
    ),
    Rule(
        "odbc_braced",
        re.compile(r"(?i)(?<![\w])(?:pwd|password|passwd)[ \t]*=[ \t]*\{(?P<pw>(?:[^}\n]|\}\})*)\}"),
        _keep_group("pw", "password"),
        ("{",),
    ),
    # command lines
    Rule(
        "curl_user",
        re.compile(r"(?:^|(?<=\s))(?:-u|--user|--proxy-user)[ \t=]+(?P<q>['\"]?)[^\s:'\"]+:(?P<pw>[^\s'\"]+)(?P=q)"),
        _keep_group("pw", "password"),
        ("-u",),
    ),
    Rule(
        "mysql_p",
        re.compile(
            r"\b(?:mysql|mysqldump|mysqladmin|mysqlimport|mysqlpump|mariadb|mariadb-dump)\b[^\n]{0,400}?[ \t]-p"
            r"(?P<pw>'[^'\n]*'|\"[^\"\n]*\"|[^\s'\"]+)"
        ),
        _keep_group("pw", "password"),
        ("mysql", "mariadb"),
    ),
    *[
        Rule(f"cli_password_{needles[0]}", re.compile(prefix + _SHELL_WORD), _keep_group("pw", "password"), needles)
        for needles, prefix in (
            (("sshpass",), r"\bsshpass[ \t]+-p[ \t]*"),
            (("docker",), r"\bdocker[ \t]+login\b[^\n]{0,400}?[ \t](?:-p|--password)[ \t=]+"),
            (("sqlcmd", "bcp"), r"\b(?:sqlcmd|bcp)\b[^\n]{0,400}?[ \t]-P[ \t]*"),
            (("redis-cli",), r"\bredis-cli\b[^\n]{0,400}?[ \t]-a[ \t]+"),
            (("beeline",), r"\bbeeline\b[^\n]{0,400}?[ \t]-p[ \t]+"),
            (("mongo",), r"\bmongo(?:sh|dump|restore|import|export)?\b[^\n]{0,400}?[ \t]-p[ \t]+"),
            (("-passin", "-passout"), r"-pass(?:in|out)[ \t]+pass:"),  # openssl
            (("storepass", "keypass"), r"-(?:src|dest)?(?:store|key)pass[ \t]+"),  # keytool
        )
    ],
    Rule(
        "flag",
        re.compile(
            r"(?<![\w-])--(?P<flag>[A-Za-z][\w-]{0,40})(?:=|[ \t]+)(?P<val>'[^'\n]*'|\"[^\"\n]*\"|[^\s'\"-][^\s'\"]*)"
        ),
        _flag,
        ("--",),
    ),
    # requests-style auth tuples and login() calls in a traceback's source line
    Rule(
        "auth_tuple",
        re.compile(
            r"(?:\bauth[ \t]*=[ \t]*\(?|\b(?:HTTPBasicAuth|HTTPDigestAuth|HTTPProxyAuth|BasicAuth|DigestAuth)[ \t]*\("
            r"|\.login[ \t]*\()"
            r"[ \t]*(?P<q1>['\"])[^'\"\n]*(?P=q1)[ \t]*,[ \t]*(?P<q>['\"])(?P<pw>[^'\"\n]*)(?P=q)"
        ),
        _keep_group("pw", "password", _worth_hiding),
        ("auth", "login"),
        ci=True,
    ),
    Rule(
        "airflow_variables_set",
        re.compile(r"\bvariables[ \t]+set[ \t]+(?P<key>['\"]?[\w.\-]+['\"]?)[ \t]+(?P<val>'[^'\n]*'|\"[^\"\n]*\"|\S+)"),
        _variables_set,
        ("variables",),
    ),
    Rule(
        "go_dsn",  # user:pass@tcp(host:3306)/db, the Go MySQL driver's DSN
        re.compile(r"(?<![\w/:])[\w.\-]{1,64}:(?P<pw>[^\s@'\"]{1,128})@(?:tcp|unix)\("),
        _keep_group("pw", "password"),
        ("@tcp(", "@unix("),
    ),
    Rule(
        "netrc",
        re.compile(r"\blogin[ \t]+\S+[ \t]+password[ \t]+(?P<pw>\S+)"),
        _keep_group("pw", "password", _worth_hiding),
        ("password",),
    ),
    Rule(
        "sql_password",
        re.compile(r"(?i)\b(?:identified[ \t]+by|password)[ \t]+(?P<q>['\"])(?P<pw>[^'\"\n]*)(?P=q)"),
        _keep_group("pw", "password", _worth_hiding),
        ("identified", "password"),
        ci=True,
    ),
    Rule(
        "redis_auth", re.compile(r"\(AUTH (?:[^\s)]+ )?(?P<pw>[^\s)]+)\)"), _keep_group("pw", "password"), ("(AUTH ",)
    ),
    Rule(
        "xml",
        re.compile(
            r"<(?P<tag>(?:[\w.\-]+:)?[A-Za-z_][\w.\-]{0,60})(?:\s[^<>]{0,512})?>(?P<val>[^<\n]{1,4096})</(?P=tag)>"
        ),
        _xml,
        ("</",),
    ),
    Rule(
        "named_value",
        re.compile(
            r"(?P<nq>\\?[\"'])name(?P=nq)[ \t]*:[ \t]*(?P<q1>\\?[\"'])(?P<name>[^\"'\\\n]{1,80})(?P=q1)[ \t]*,[ \t]*"
            r"(?P<vq>\\?[\"'])value(?P=vq)[ \t]*:[ \t]*(?P<q2>\\?[\"'])(?P<val>(?:(?!(?P=q2)).){0,4096})(?P=q2)"
            r"|\bkey[ \t]*=[ \t]*(?P<q3>[\"'])(?P<name2>[^\"'\n]{1,80})(?P=q3)[ \t]+value[ \t]*=[ \t]*"
            r"(?P<q4>[\"'])(?P<val2>[^\"'\n]{0,4096})(?P=q4)"
        ),
        _named_value_either,
        ("value",),
    ),
    *[
        Rule(f"vendor_{index}_{kind}", re.compile(pattern), placeholder(kind), needles)
        for index, (kind, needles, pattern) in enumerate(_VENDOR_TOKENS)
    ],
]

_RULES_AFTER_PAIRS: list[Rule] = [
    Rule(
        "bearer",
        re.compile(r"(?P<pre>\b[Bb]earer[ \t]+)(?P<val>[A-Za-z0-9._~+/\-]{8,}=*)(?![\w\"'=])"),
        _keep_group("val", "token", _worth_hiding),
        ("earer",),
    ),
    Rule(
        "phrase",
        re.compile(
            r"(?i)\b(?:token|api[ _-]?key|secret|password|passwd|credential)[ \t]+(?P<val>[A-Za-z0-9._~+/\-]{16,}=*)"
        ),
        _phrase,
        ("token", "key", "secret", "passw", "credential"),
        ci=True,
    ),
]

# ---- key/value pairs in any quoting -------------------------------------------------------------
_PAIR = re.compile(
    r"(?<![\w.\\])(?P<kq>\\\"|[\"'`])?(?P<key>[A-Za-z_][\w.\-]{0,80})(?(kq)(?P=kq))"
    r"[ \t]{0,16}(?P<sep>=>|:=|=|:)(?!//)[ \t]{0,16}"
)
_UNQUOTED = re.compile(r"(?:[^\s'\"`,;&<>()\[\]{}\\]|[,)\]}](?=[^\s'\"`,;&<>()\[\]{}\\]))+")


def _value_at(text: str, pos: int, unquoted: re.Pattern[str] = _UNQUOTED) -> tuple[int, int, str, bool] | None:
    """The value starting at ``pos``: (start, end, value, quoted); None for nested structures.

    Quoted values run to their closing quote (escaped quotes and ``\\"..\\"`` included) or, when
    the line was cut, to its end; ``b'...'`` bytes reprs count as quoted.
    """
    if pos >= len(text):
        return None
    if text.startswith(("b'", 'b"'), pos):
        pos += 1
    for quote in ('\\"', "\\'", '"', "'", "`"):
        if text.startswith(quote, pos):
            start = pos + len(quote)
            end = start
            line_end = text.find("\n", start)
            line_end = len(text) if line_end < 0 else line_end
            while True:
                end = text.find(quote, end, line_end)
                if end < 0:
                    return start, line_end, text[start:line_end], True
                if len(quote) == 1 and end > start and text[end - 1] == "\\" and not text.startswith("\\\\", end - 2):
                    end += 1
                    continue
                return start, end, text[start:end], True
    if text[pos] in "([{<":
        return None
    match = unquoted.match(text, pos, min(len(text), pos + 4096))
    if not match:
        return None
    return pos, match.end(), match.group(0), False


def _scrub_pairs(
    text: str,
    key_matters: Callable[[str], bool],
    decide: Callable[[str, str, str, bool, str], str | None],
    unquoted: re.Pattern[str] = _UNQUOTED,
) -> str:
    """Walk ``key sep value`` pairs whose key ``key_matters``; ``decide(key, sep, value, quoted,
    following)`` returns the placeholder kind for a value to hide, or None. Values that are kept
    are walked too, so a pair nested in a string value (``"extra": "{\\"token\\": ..}"``) is found."""
    out: list[str] = []
    pos = 0
    while True:
        match = _PAIR.search(text, pos)
        if match is None:
            break
        found = _value_at(text, match.end(), unquoted) if key_matters(match.group("key")) else None
        if found is None:
            out.append(text[pos : match.end()])
            pos = match.end()
            continue
        start, end, value, quoted = found
        kind = decide(match.group("key"), match.group("sep"), value, quoted, text[end : end + 1])
        if kind is None:
            out.append(text[pos : match.end()])
            pos = match.end()
            continue
        out.append(text[pos:start])
        out.append(placeholder(kind))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _secret_pair(key: str, sep: str, value: str, quoted: bool, following: str) -> str | None:
    if not is_secret_name(key) or not _worth_hiding(value, following="" if quoted else following, key=key):
        return None
    words = key_words(key)
    if words[-1] == "pwd" and value.startswith(("/", "~")):
        return None  # the shell's PWD, a directory (one level deep too)
    if not quoted and sep == ":" and re.fullmatch(r"[A-Za-z]+", value) and following in (" ", "\t"):
        return None  # "password: the ..." is prose, not a value
    return "password" if words[-1] in ("password", "passwd", "pass", "pwd", "pw", "passphrase") else "secret"


# ---- layer 3: detect-secrets --------------------------------------------------------------------
#: (plugin, placeholder kind, whether a hit must also look random (the loose formats), needles
#: of which one must occur for the plugin to run, whether the needles are lower-cased)
_DETECTORS: list[tuple[RegexBasedDetector, str, bool, tuple[str, ...], bool]] = [
    (AWSKeyDetector(), "aws_key", False, ("akia", "asia", "a3t", "abia", "acca", "aws"), True),
    (AzureStorageKeyDetector(), "azure_key", False, ("AccountKey=",), False),
    (BasicAuthDetector(), "password", False, ("://",), False),
    (JwtTokenDetector(), "jwt", False, ("eyJ",), False),
    (SlackDetector(), "token", False, ("xox", "hooks.slack.com"), True),
    (StripeDetector(), "api_key", False, ("k_live_",), False),
    (GitHubTokenDetector(), "token", False, ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), False),
    (GitLabTokenDetector(), "token", False, ("gl", "GR1348941"), False),
    (OpenAIDetector(), "api_key", False, ("T3BlbkFJ",), False),
    (NpmDetector(), "token", False, ("_authToken",), False),
    (SendGridDetector(), "api_key", False, ("SG.",), False),
    (TelegramBotTokenDetector(), "token", False, (":",), False),
    (DiscordBotTokenDetector(), "token", False, (".",), False),
    (PypiTokenDetector(), "token", False, ("pypi-",), False),
    (SquareOAuthDetector(), "secret", False, ("sq0csp-",), False),
    (TwilioKeyDetector(), "api_key", True, ("AC", "SK"), False),
    (MailchimpDetector(), "api_key", True, ("-us",), False),
    (ArtifactoryDetector(), "token", True, ("AKC", "AP"), False),
    (IbmCloudIamDetector(), "api_key", True, ("key", "pwd", "pass", "token"), True),
    (IbmCosHmacDetector(), "secret", True, ("secret",), True),
    (CloudantDetector(), "password", True, ("cl",), True),
    (SoftlayerDetector(), "api_key", True, ("sl",), True),
]
_KEYWORD = KeywordDetector()
_KEYWORD_HINT = re.compile(r"(?i)pass|pwd|secret|_?key\b|api_?key|contrase")
_BASE64 = Base64HighEntropyString()
_HEX = HexHighEntropyString()
_BASE64_CHARS = frozenset(_BASE64.charset)
_HEX_CHARS = frozenset(_HEX.charset)
#: An unquoted value the entropy check looks at: token characters only, ending where they end.
_TOKEN_VALUE = re.compile(r"[A-Za-z0-9+/=_\-]{20,1024}(?![^\s'\"`,;&<>()\[\]{}\\])")
#: Keys whose random-looking values are identifiers, not secrets (commit shas, request ids, etags).
_ID_WORDS = frozenset(
    {
        "id", "ids", "uuid", "guid", "sha", "sha1", "sha256", "sha512", "md5", "hash", "digest",
        "checksum", "crc", "crc32c", "etag", "commit", "revision", "rev", "ref", "version", "trace",
        "traceparent", "span", "request", "correlation", "run", "job", "task", "execution",
        "fingerprint", "object", "blob", "build", "image", "container", "pod", "node", "txn",
        "transaction", "message", "msg", "event", "query", "statement", "operation", "process",
        "thread", "parent", "cursor", "offset", "marker", "continuation", "next", "page", "upload",
        "part", "lease", "batch", "sequence", "seq", "kid", "path", "file", "filename", "name", "url",
        "uri", "host", "bucket", "prefix", "location", "dag", "map", "index", "hostname",
        "dataset", "asset", "table", "schema", "database", "db", "user", "username", "login", "email",
        "account", "tenant", "project", "region", "zone", "cluster", "tag", "branch",
    }
)  # fmt: skip


def _no_id_word(key: str) -> bool:
    return not any(w in _ID_WORDS for w in key_words(key))


def _high_entropy_pair(key: str, sep: str, value: str, quoted: bool, following: str) -> str | None:
    """detect-secrets' entropy measure on a value in key/value context whose key names no
    identifier: base64-like above 4.5 bits per character, hex-like above 3.0 from 32 characters."""
    if not 20 <= len(value) <= 1024 or _MARK in value:
        return None
    chars = set(value)
    if chars <= _HEX_CHARS:
        if sep == ":" and not quoted:
            return None  # "not a tree: <sha>": prose naming a digest
        hex_hit = len(value) >= 32 and _HEX.calculate_shannon_entropy(value) > _HEX.entropy_limit
        return "high_entropy" if hex_hit else None
    if not chars <= _BASE64_CHARS or value.startswith("/") or "//" in value:
        return None
    if not re.search(r"[0-9]", value) or not looks_random(value, 20):
        return None
    return "high_entropy" if _BASE64.calculate_shannon_entropy(value) > _BASE64.entropy_limit else None


def _plugin_hits(text: str, found: dict[str, str]) -> None:
    """What detect-secrets' format plugins find in ``text``, as literal value -> placeholder kind."""
    lowered = text.lower()
    for plugin, kind, loose, needles, ci in _DETECTORS:
        haystack = lowered if ci else text
        if needles and not any(needle in haystack for needle in needles):
            continue
        for hit in plugin.analyze_string(text):
            value = hit.strip(" \t=:\"'")
            if len(value) >= 6 and _MARK not in value and (not loose or looks_random(value, 12)):
                found.setdefault(value, kind)


def _keyword_hits(text: str, found: dict[str, str]) -> None:
    """What detect-secrets' keyword detector finds: quoted values after a secret word, looked at
    a line at a time (in windows of a long line), only on lines that hold both."""
    for line in text.splitlines():
        if not _KEYWORD_HINT.search(line) or not ("'" in line or '"' in line or "`" in line):
            continue
        for offset in range(0, len(line), _WINDOW - 256):
            for hit in _KEYWORD.analyze_string(line[offset : offset + _WINDOW]):
                if len(hit) >= 4 and _worth_hiding(hit):
                    found.setdefault(hit, "secret")
            if offset + _WINDOW >= len(line):
                break


def _detect(text: str) -> str:
    """Layer 3 on one chunk: collect what the plugins find, replace each literal everywhere,
    then hide random-looking values in key/value context."""
    found: dict[str, str] = {}
    _plugin_hits(text, found)
    _keyword_hits(text, found)
    for value in sorted(found, key=len, reverse=True):
        text = text.replace(value, placeholder(found[value]))
    return _scrub_pairs(text, _no_id_word, _high_entropy_pair, _TOKEN_VALUE)


# ---- putting it together ------------------------------------------------------------------------
def _rules(text: str) -> str:
    lowered = text.lower()
    for rule in _RULES:
        text = rule.apply(text, lowered)
    text = _scrub_pairs(text, is_secret_name, _secret_pair)
    lowered = text.lower()
    for rule in _RULES_AFTER_PAIRS:
        text = rule.apply(text, lowered)
    return text


_KEY_OPEN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_KEY_CLOSE = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")


def chunks(text: str, size: int = CHUNK_CHARS) -> Iterator[str]:
    """``text`` in pieces of about ``size`` characters, cut after a line end where there is one
    (else after whitespace), so a secret is never split between two pieces on an ordinary line."""
    start = 0
    while start < len(text):
        end = start + size
        if end >= len(text):
            yield text[start:]
            return
        cut = text.rfind("\n", start, end)
        if cut < start:
            cut = max(text.rfind(" ", start, end), text.rfind("\t", start, end))
        end = cut + 1 if cut >= start else end
        yield text[start:end]
        start = end


def scrub(
    text: str | None,
    extra_secrets: Iterable[str] = (),
    *,
    registered: bool = True,
    rules: bool = True,
    detectors: bool = True,
) -> str:
    """Return ``text`` with every recognised secret replaced by a typed placeholder.

    ``extra_secrets`` are literal values to remove too. The layer switches exist to measure
    what each layer contributes (and for a process that has nothing registered); medic's
    capture always runs all three.
    """
    if not text:
        return text or ""
    layers = {"registered": registered, "rules": rules, "detectors": detectors}
    return "".join(scrub_pieces(chunks(text), extra_secrets, **layers))


def scrub_pieces(
    pieces: Iterable[str],
    extra_secrets: Iterable[str] = (),
    *,
    registered: bool = True,
    rules: bool = True,
    detectors: bool = True,
) -> Iterator[str]:
    """Scrub consecutive pieces of one text (each ending at a line end), one at a time, so work
    and memory stay bounded however long the text is. A private key block left open at the end
    of a piece is removed up to its END line in the next ones."""
    extra = tuple(extra_secrets)
    in_key = False
    for whole in pieces:
        piece = whole
        if in_key:
            close = _KEY_CLOSE.search(piece)
            if close is None:
                continue  # all of it is key material, already stood for by the placeholder
            piece = piece[close.end() :]
        opened = [m.end() for m in _KEY_OPEN.finditer(piece)]
        in_key = bool(opened) and _KEY_CLOSE.search(piece, opened[-1]) is None
        if registered:
            piece = mask_registered(piece, extra)
        if rules:
            piece = _rules(piece)
        if detectors:
            piece = _detect(piece)
        yield piece


def line_pieces(lines: Iterable[str], size: int = CHUNK_CHARS) -> Iterator[str]:
    """Whole lines from ``lines`` (a file, stdin) gathered into pieces of about ``size``
    characters; a single longer line is cut with ``chunks``."""
    buffer: list[str] = []
    held = 0
    for line in lines:
        if len(line) > size:
            if buffer:
                yield "".join(buffer)
                buffer, held = [], 0
            yield from chunks(line, size)
            continue
        buffer.append(line)
        held += len(line)
        if held >= size:
            yield "".join(buffer)
            buffer, held = [], 0
    if buffer:
        yield "".join(buffer)


def scrub_stream(source: TextIO, sink: TextIO) -> None:
    """``medic scrub``: copy ``source`` to ``sink`` as medic would store it, line for line. A
    fresh process has nothing registered with Airflow's masker, so that layer is skipped (and
    Airflow is not imported); medic's rules and detect-secrets run as in capture."""
    for piece in scrub_pieces(line_pieces(source), registered=False):
        sink.write(piece)
        sink.flush()


# ---- structured data ------------------------------------------------------------------------------
def _hide_all(value: Any) -> Any:  # noqa: ANN401 - JSON-like data of any shape
    """Every string below a sensitive key goes; numbers, booleans and None stay (as Airflow does)."""
    if isinstance(value, str):
        return placeholder("secret") if value else value
    if isinstance(value, Mapping):
        return {k: _hide_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_hide_all(v) for v in value]
    return value


#: Deeper than this, structured data is hidden whole rather than walked (a cycle, a hostile payload).
MAX_DEPTH = 64


def scrub_structure(
    value: Any,  # noqa: ANN401 - JSON-like data of any shape, returned in the same shape
    extra_secrets: Iterable[str] = (),
    *,
    _key: str | None = None,
    _depth: int = 0,
) -> Any:  # noqa: ANN401
    """A copy of JSON-like data (conf, params, facets, XCom) with the value of every sensitive key
    hidden at any depth (``{'db_pass': ...}``, ``{'extra': {'api_key': ...}}``) and every other
    string scrubbed as text. Dict keys and non-string values are kept, so structure survives."""
    if (_key is not None and is_sensitive_key(_key)) or _depth > MAX_DEPTH:
        return _hide_all(value) if _depth <= MAX_DEPTH else placeholder("too_deep")
    if isinstance(value, str):
        return scrub(value, extra_secrets)
    if isinstance(value, Mapping):
        return {
            k: scrub_structure(v, extra_secrets, _key=k if isinstance(k, str) else None, _depth=_depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [scrub_structure(v, extra_secrets, _depth=_depth + 1) for v in value]
    return value
