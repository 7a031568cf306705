"""An OpenLineage transport that scrubs every event before it leaves the process.

Airflow's OpenLineage provider puts a failed task's exception message and stack trace into its
FAIL event (the ``errorMessage`` facet). Its own redaction did not remove a Connection password
that the task fetched and that a client echoed into the exception (measured on Airflow 3.3.2 with
provider 2.20.3: the planted key of ``demo_partner_api`` reached the event verbatim), while the
same task's log had it masked. Secrets must not leave the failing task, lineage included, so
the bundle wraps whatever transport the deployment configures::

    AIRFLOW__OPENLINEAGE__TRANSPORT='{"type": "medic.lineage.transport.ScrubbingTransport",
                                      "transport": {"type": "http", "url": "http://marquez:5000"}}'

Every string in every event (the provider's and medic's) goes through medic's secret patterns
and the values Airflow's masker knows in this process; then the inner transport sends it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import attr
from openlineage.client.transport.transport import Config, Transport

log = logging.getLogger(__name__)


@attr.define
class ScrubbingConfig(Config):
    transport: dict[str, Any] = attr.field(factory=dict)

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> ScrubbingConfig:
        inner = params.get("transport")
        if not isinstance(inner, dict) or not inner.get("type"):
            raise ValueError('ScrubbingTransport needs "transport": {"type": ..., ...} (the transport it wraps)')
        return cls(transport=dict(inner))


def _masker() -> Any:
    try:
        from airflow.sdk.log import redact
    except ImportError:  # pragma: no cover - an Airflow without the task SDK
        return None
    return redact


def scrub_event(event: Any) -> dict[str, Any]:
    """The event as the dict a transport serialises, with every string scrubbed."""
    from openlineage.client.serde import Serde

    from medic.capture.scrub import scrub

    redact = _masker()

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            text = scrub(value)
            if redact is not None:
                with contextlib.suppress(Exception):  # the masker must never stop the event
                    text = redact(text, replacement="[REDACTED:sensitive_value]")
            return text
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, list):
            return [clean(item) for item in value]
        return value

    return clean(Serde.to_dict(event))


class ScrubbingTransport(Transport):
    """Scrubs, then hands the event to the transport it wraps."""

    kind = "medic_scrubbing"
    config_class = ScrubbingConfig

    def __init__(self, config: ScrubbingConfig) -> None:
        from openlineage.client.transport import get_default_factory

        self.config = config
        self.inner = get_default_factory().create(dict(config.transport))

    def emit(self, event: Any) -> Any:
        return self.inner.emit(scrub_event(event))

    def close(self, timeout: float = -1) -> bool:
        return self.inner.close(timeout)

    def __str__(self) -> str:
        return f"<ScrubbingTransport around {self.inner}>"
