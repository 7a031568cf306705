"""The contract every part of medic speaks: the failure taxonomy and the structured ``Diagnosis``.

The same pydantic model is the JSON schema a language model is given, the shape stored in
``medic.diagnoses``, and what the policy decides on, so a diagnosis means one thing wherever
it travels. Nothing here imports the rest of medic.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

ErrorClass = Literal[
    "network_transient",
    "rate_limited",
    "upstream_unavailable",
    "resource_exhausted",
    "timeout",
    "worker_lost",
    "db_contention",
    "auth_failure",
    "missing_input",
    "data_quality",
    "code_bug",
    "dependency_error",
    "config_error",
]
Action = Literal[
    "retry",
    "retry_with_backoff",
    "retry_with_more_resources",
    "fix_credentials",
    "fix_code",
    "fix_data",
    "escalate",
]
Transience = Literal["transient", "intermittent", "permanent", "unknown"]

ERROR_CLASSES: tuple[str, ...] = get_args(ErrorClass)
ACTIONS: tuple[str, ...] = get_args(Action)
#: Actions a machine may take without a person: a re-run, now or after a delay.
AUTO_SAFE_ACTIONS = frozenset({"retry", "retry_with_backoff"})
TRANSIENT_CLASSES = frozenset(
    {"network_transient", "rate_limited", "upstream_unavailable", "worker_lost", "db_contention"}
)
INTERMITTENT_CLASSES = frozenset({"timeout", "resource_exhausted"})

# Texts are printable ASCII without '"' and '\\', each pattern carrying its own bound of at most
# 128: what a grammar-constrained decoder enforces reliably (docs/DESIGN.md, "Contracts").
CONTRACT_CHARS = r"[ !#-\[\]-~]"
_OUTSIDE_CONTRACT = re.compile(r"[^ !#-\[\]-~]")


def contract_text(text: str, limit: int) -> str:
    """Any text as the contract allows it: quotes to ', backslashes to /, anything else odd to ?."""
    text = text.replace('"', "'").replace("\\", "/")
    return _OUTSIDE_CONTRACT.sub("?", text)[:limit]


def transience_of(error_class: str) -> Transience:
    """How a class of failure usually behaves over time; what a re-run can be expected to do."""
    if error_class in TRANSIENT_CLASSES:
        return "transient"
    if error_class in INTERMITTENT_CLASSES:
        return "intermittent"
    return "permanent"


Text128 = Annotated[str, StringConstraints(max_length=128, pattern=rf"^{CONTRACT_CHARS}{{0,128}}$")]
Text80 = Annotated[str, StringConstraints(max_length=80, pattern=rf"^{CONTRACT_CHARS}{{0,80}}$")]


class ActionParams(BaseModel):
    """Parameters of the allow-listed actions; only these, validated."""

    model_config = ConfigDict(extra="forbid")
    delay_seconds: int | None = Field(default=None, ge=30, le=86400, description="retry_with_backoff only")


class Diagnosis(BaseModel):
    """A structured diagnosis of one incident (DESIGN "Contracts"); its JSON schema is what a model gets."""

    model_config = ConfigDict(extra="forbid")
    error_class: ErrorClass
    transience: Transience
    root_cause: Text128
    evidence: list[Text128] = Field(default_factory=list, max_length=4)
    action: Action
    action_params: ActionParams = Field(default_factory=ActionParams)
    confidence: float = Field(ge=0.0, le=1.0)
    explanation: Text128
    similar_incidents: list[Text80] = Field(default_factory=list, max_length=5)

    @model_validator(mode="after")
    def _params_fit_the_action(self) -> Diagnosis:
        """A delay means something only for retry_with_backoff; elsewhere it is dropped."""
        if self.action != "retry_with_backoff" and self.action_params.delay_seconds is not None:
            self.action_params = ActionParams()
        return self
