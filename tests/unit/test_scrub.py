from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from medic.capture.records import build_record
from medic.capture.scrub import (
    CHUNK_CHARS,
    is_secret_name,
    is_sensitive_key,
    scrub,
    scrub_structure,
)

PLANTED = [
    ("postgresql://etl:Hunter2-pw@db.prod.internal:5432/sales", "Hunter2-pw"),
    ("connecting with redis://:r3dis-secret-9@cache:6379/0", "r3dis-secret-9"),
    ("AIRFLOW_CONN_WAREHOUSE=mysql://loader:My%40Pass-77@10.0.0.5/dw", "My%40Pass-77"),
    ("Authorization: Bearer abcDEF0123456789ghiJKL.mno", "abcDEF0123456789ghiJKL.mno"),
    (
        "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    ("aws_access_key_id=AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("key=AIzaSyA1234567890abcdefghijklmnopqrstuv used", "AIzaSyA1234567890abcdefghijklmnopqrstuv"),
    (
        "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=c2VjcmV0a2V5MTIz==;EndpointSuffix=core",
        "c2VjcmV0a2V5MTIz==",
    ),
    ('{"password": "pa55-in-json", "user": "bob"}', "pa55-in-json"),
    ("client_secret: 'quoted-secret-value'", "quoted-secret-value"),
    ("--api-key=ak_live_0123456789", "ak_live_0123456789"),
    ("slack xoxb-123456789012-abcdefghijklmnop failed", "xoxb-123456789012-abcdefghijklmnop"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabc\n-----END RSA PRIVATE KEY-----", "MIIEowIBAAKCAQEA7"),
]


@pytest.mark.parametrize(("text", "secret"), PLANTED)
def test_planted_secret_is_removed(text: str, secret: str) -> None:
    cleaned = scrub(text)
    assert secret not in cleaned
    assert "[REDACTED:" in cleaned


def test_placeholders_are_typed_and_context_survives() -> None:
    cleaned = scrub("psycopg.OperationalError: password authentication failed for postgresql://bob:pw123@db/x")
    assert "password authentication failed" in cleaned
    assert "postgresql://bob:[REDACTED:password]@db/x" in cleaned
    assert scrub("Authorization: Basic ZXRsOlNlY3JldDEyMw==") == "Authorization: Basic [REDACTED:token]"
    assert scrub("-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQdGBGX\n-----END PGP PRIVATE KEY BLOCK-----") == (
        "[REDACTED:private_key]"
    )


def test_extra_sensitive_values_are_removed_wherever_they_appear() -> None:
    cleaned = scrub("calling api with plainvalue-xyz in the url", extra_secrets=["plainvalue-xyz", ""])
    assert "plainvalue-xyz" not in cleaned
    assert "[REDACTED:sensitive_value]" in cleaned


def test_ordinary_error_text_is_untouched() -> None:
    text = "KeyError: 'customer_id'\nFileNotFoundError: [Errno 2] No such file: '/data/x.csv'"
    assert scrub(text) == text


@pytest.mark.parametrize(
    "line",
    [
        "MySQLdb.OperationalError: (1045, \"Access denied for user 'etl'@'10.0.0.4' (using password: YES)\")",
        "openai usage: prompt_tokens=912 completion_tokens=2048 total_tokens=2960",
        "ValueError: tokenizer_batch_size=256 is larger than the model allows",
        "authlib OAuthError: invalid_client; token_url: https://login.acme.io/oauth2/v1/token",
        "botocore.exceptions.NoCredentialsError: Unable to locate credentials",
        "google.auth.exceptions.DefaultCredentialsError: Your default credentials were not found.",
        "airflow.exceptions.AirflowException: AuthenticationFailed: Incorrect authentication credentials.",
        "    conn = psycopg2.connect(host=conn.host, user=conn.login, password=conn.password)",
        'WWW-Authenticate: Bearer realm="api", error="invalid_token"',
        "ImagePullBackOff for ghcr.io/acme/etl@sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
        "WARNING - PWD=/opt/airflow/dags HOME=/home/airflow",
        "GOOGLE_APPLICATION_CREDENTIALS=/opt/airflow/secrets/sa.json",
    ],
)
def test_lines_that_only_look_like_secrets_are_kept_whole(line: str) -> None:
    """Secret words inside longer names, placeholders, code and prose are not secrets; the
    diagnosis reads these lines (an auth failure's own words must survive)."""
    assert scrub(line) == line


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("db_pass", True),
        ("WAREHOUSE_DB_PASS", True),
        ("X-Amz-Security-Token", True),
        ("aws_secret_access_key", True),
        ("AccountKey", True),
        ("AIRFLOW__CORE__FERNET_KEY", True),
        ("PGPASSWORD", True),
        ("SecretString", True),
        ("fs.azure.account.key.acmelake.dfs.core.windows.net", True),
        ("completion_tokens", False),
        ("tokenizer_batch_size", False),
        ("token_url", False),
        ("NoCredentialsError", False),
        ("secret_name", False),
        ("partition_key", False),
        ("NextToken", False),
        ("password_expiry_days", False),
    ],
)
def test_a_name_is_secret_when_what_it_names_is_one(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_structured_values_under_sensitive_keys_are_hidden_at_any_depth() -> None:
    conf = {
        "target": "prod",
        "db_pass": "Hunter2Xyz9",  # medic's rule: Airflow's default names do not include "pass"
        "partner": {"extra": {"api_key": "k-8f2kq0", "timeout": 30}, "tokens": ["t-1a2b3c4d"]},
        "steps": [{"name": "load", "connection_string": "Server=x;Password=Pq81zz"}],
        "message": "retry with postgresql://etl:Lq72vXp0@db/x",
        "max_tokens": 4096,
    }
    cleaned = scrub_structure(conf)
    text = repr(cleaned)
    for secret in ("Hunter2Xyz9", "k-8f2kq0", "t-1a2b3c4d", "Pq81zz", "Lq72vXp0"):
        assert secret not in text
    assert cleaned["target"] == "prod" and cleaned["partner"]["extra"]["timeout"] == 30
    assert cleaned["max_tokens"] == 4096 and cleaned["steps"][0]["name"] == "load"
    assert cleaned["message"] == "retry with postgresql://etl:[REDACTED:password]@db/x"


def test_sensitive_keys_follow_airflows_configured_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from medic.capture import scrub as module

    assert not is_sensitive_key("loyalty_pin")
    monkeypatch.setenv("AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES", "loyalty_pin, branch_code")
    module._airflow_sensitive_fields.cache_clear()
    is_sensitive_key.cache_clear()
    try:
        assert is_sensitive_key("loyalty_pin") and is_sensitive_key("HQ_BRANCH_CODE")
        assert scrub_structure({"loyalty_pin": "4821"}) == {"loyalty_pin": "[REDACTED:secret]"}
    finally:
        monkeypatch.delenv("AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES")
        module._airflow_sensitive_fields.cache_clear()
        is_sensitive_key.cache_clear()


def test_a_registered_value_goes_whole_before_any_pattern_cuts_it() -> None:
    """The masker runs first: a pattern that took ``Wq81,`` off the front would leave the rest
    for nobody to recognise."""
    from airflow.sdk.log import mask_secret

    password = "Wq81,zT4!vhQ"
    mask_secret(password)
    error = ConnectionError(f"connect(password={password}) refused; retry with {password.upper()}")
    task = SimpleNamespace(dag_id="d", run_id="r", task_id="t", try_number=1, max_tries=0, state="failed")
    record = build_record(task, error, source="task", now=datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert "connect(password=[REDACTED:sensitive_value])" in record.error_message
    assert "zT4" not in record.model_dump_json()


def test_a_private_key_split_across_chunks_is_removed_whole() -> None:
    body = "\n".join(f"Qk{i:04d}Zx" + "A" * 56 for i in range(3000))  # ~195 KiB: spans several chunks
    text = f"before\n-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\nafter\n"
    assert len(text) > 2 * CHUNK_CHARS
    cleaned = scrub(text)
    assert "Qk" not in cleaned
    assert cleaned.startswith("before\n") and cleaned.endswith("\nafter\n")


@pytest.mark.parametrize(
    "text",
    [
        "a:b@" * 4096,
        "password='" * 1638,
        "mysql " * 2730,
        "https://x " * 1638,
        "Authorization: " + "x" * 16369,
        "".join(chr(33 + (i * 7919) % 94) for i in range(16384)),
    ],
)
def test_hostile_input_costs_bounded_time(text: str) -> None:
    started = time.process_time()
    scrub(text)
    assert time.process_time() - started < 1.0


def test_medic_scrub_prints_stdin_as_it_would_be_stored() -> None:
    medic = Path(sys.executable).with_name("medic")
    lines = "postgresql://u:Fall@qZ7/2x@db/x\nnothing to see here\n+ curl -u deploy:Rk83vq https://x\n"
    done = subprocess.run([str(medic), "scrub"], input=lines, capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.splitlines() == [
        "postgresql://u:[REDACTED:password]@db/x",
        "nothing to see here",
        "+ curl -u deploy:[REDACTED:password] https://x",
    ]
