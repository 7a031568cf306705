"""An OpenLineage transport that scrubs every event before it leaves the process.

Airflow's OpenLineage provider puts a failed task's exception message and stack trace into its
FAIL event (the ``errorMessage`` facet). Its own redaction did not remove a Connection password
that the task fetched and that a client echoed into the exception (measured on Airflow 3.3.2 with
provider 2.20.3: the planted key of ``demo_partner_api`` reached the event verbatim), while the
same task's log had it masked. Secrets must not leave the failing task, lineage included, so
the bundle wraps whatever transport the deployment configures::

    AIRFLOW__OPENLINEAGE__TRANSPORT='{"type": "medic.lineage.transport.ScrubbingTransport",
                                      "transport": {"type": "http", "url": "http://marquez:5000"}}'

Every event (the provider's and medic's) is walked: values under sensitive keys (Airflow's
sensitive field names and medic's, e.g. ``{'db_pass': ...}`` in a dag run's conf) are hidden
whatever they look like, and every other string goes through ``medic.capture.scrub`` (the
values Airflow's masker knows in this process, medic's rules, detect-secrets); then the inner
transport sends it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attr
from openlineage.client.serde import Serde
from openlineage.client.transport import get_default_factory
from openlineage.client.transport.transport import Config, Transport

from medic.capture.scrub import scrub_structure

if TYPE_CHECKING:
    from openlineage.client.client import Event

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


def scrub_event(event: Event) -> dict[str, Any]:
    """The event as the dict a transport serialises, scrubbed: the value of every sensitive key
    (a dag run's ``conf``, operator params, facets) hidden at any depth, every other string
    scrubbed as text (Airflow's masker first, then medic's rules and detect-secrets)."""
    cleaned: dict[str, Any] = scrub_structure(Serde.to_dict(event))
    return cleaned


class ScrubbingTransport(Transport):
    """Scrubs, then hands the event to the transport it wraps."""

    kind = "medic_scrubbing"
    config_class = ScrubbingConfig

    def __init__(self, config: ScrubbingConfig) -> None:
        self.config = config
        self.inner = get_default_factory().create(dict(config.transport))

    def emit(self, event: Event) -> Any:  # noqa: ANN401 - whatever the wrapped transport answers
        # transports serialise with Serde, which takes the scrubbed dict as it takes an event
        return self.inner.emit(scrub_event(event))  # type: ignore[arg-type]

    def close(self, timeout: float = -1) -> bool:
        return self.inner.close(timeout)

    def __str__(self) -> str:
        return f"<ScrubbingTransport around {self.inner}>"
