from __future__ import annotations

import pytest

from medic.capture.scrub import scrub

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


def test_extra_sensitive_values_are_removed_wherever_they_appear() -> None:
    cleaned = scrub("calling api with plainvalue-xyz in the url", extra_secrets=["plainvalue-xyz", ""])
    assert "plainvalue-xyz" not in cleaned
    assert "[REDACTED:sensitive_value]" in cleaned


def test_ordinary_error_text_is_untouched() -> None:
    text = "KeyError: 'customer_id'\nFileNotFoundError: [Errno 2] No such file: '/data/x.csv'"
    assert scrub(text) == text
