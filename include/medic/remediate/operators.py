"""The two operators ``medic_diagnose`` maps over decided incidents. Thin: the logic is
``medic.remediate.remediation``; these only wait (without a worker slot) and hand over.

- ``RemediateOperator``: an automatic fix. A backoff is waited out deferred on the triggerer.
- ``ApproveRemediationOperator``: Airflow's HITL operator with the incident's diagnosis,
  evidence, similar incidents and dry run as its body; the answer is applied, recorded, or,
  when nobody answers in time, nothing is applied and the incident is marked expired.

Neither renders templates: their texts come from logs and models and are data, never Jinja.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, cast

import httpx
from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseHook, BaseNotifier, BaseOperator, Param
from airflow.sdk.timezone import utcnow

from medic import config, db
from medic.airflow_api import AirflowApi, base_url_of
from medic.remediate import remediation

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import Logger
    from airflow.triggers.base import BaseTrigger

log = logging.getLogger(__name__)


def _run(plan: dict[str, Any], decision: remediation.Decision) -> dict[str, Any]:
    # OpenLineage's client (~0.5 s) loads when an event is built, not when the dag-processor
    # parses medic_diagnose, which imports this module.
    from medic.lineage import events as lineage  # noqa: PLC0415

    the_plan = remediation.Plan.from_dict(plan)
    with db.connect(config.get("conn_id"), application_name="medic-remediate", autocommit=True) as conn:
        if decision.kind != "apply":  # nothing to call: no API credential needed
            return remediation.record_decision(conn, the_plan, decision)
        result = remediation.apply(conn, AirflowApi.from_connection(config.get("api_conn_id")), the_plan, decision)
    if the_plan.lineage and result.get("remediation_id"):  # not when another decision held the incident
        lineage.emit_built(
            f"the remediation of incident {the_plan.incident_id}",
            lineage.remediation_applied_event,
            the_plan,
            decision,
            result,
        )
    return result


def _emit_answer(plan: remediation.Plan, decision: remediation.Decision, option: str | None) -> None:
    from medic.lineage import events as lineage  # noqa: PLC0415 (as in _run)

    if plan.lineage:
        lineage.emit_built(
            f"the answer to incident {plan.incident_id}'s approval",
            lineage.approval_answered_event,
            plan,
            decision,
            option,
        )


class _Operator(Protocol):
    """What ``_Remediating`` needs of the operator it is mixed into."""

    plan: dict[str, Any]

    @property
    def log(self) -> Logger: ...

    def defer(
        self,
        *,
        trigger: BaseTrigger,
        method_name: str,
        kwargs: dict[str, Any] | None = None,
        timeout: timedelta | int | float | None = None,
    ) -> NoReturn: ...


class _Remediating:
    """Carry out a decision for ``self.plan``; a backoff first waits deferred (no worker slot)."""

    plan: dict[str, Any]

    def carry_out(self: _Operator, decision: remediation.Decision) -> dict[str, Any]:
        if decision.kind == "apply" and decision.delay_seconds > 0:
            self.log.info("medic: backing off %s s before re-running", decision.delay_seconds)
            self.defer(
                trigger=DateTimeTrigger(moment=utcnow() + timedelta(seconds=decision.delay_seconds)),
                method_name="apply_after_backoff",
                kwargs={"decision": asdict(decision)},
            )
        return _run(self.plan, decision)

    def apply_after_backoff(
        self, context: Context, event: dict[str, Any] | None = None, decision: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return _run(self.plan, remediation.Decision(**(decision or {})))


class RemediateOperator(_Remediating, BaseOperator):
    """Apply one automatic remediation."""

    template_fields = ()
    ui_color = "#d9f2e6"

    def __init__(self, *, plan: dict[str, Any], **kwargs: Any) -> None:  # noqa: ANN401 (BaseOperator's arguments)
        super().__init__(**kwargs)
        self.plan = plan

    def execute(self, context: Context) -> dict[str, Any]:
        return self.carry_out(remediation.automatic_decision(remediation.Plan.from_dict(self.plan)))


class ApprovalLinkNotifier(BaseNotifier):
    """Says where to answer: the deep link to the task's required-actions page, in the task log,
    and, with ``[medic] notify_conn_id`` set, POSTed as JSON to that Connection's URL."""

    template_fields = ()

    def notify(self, context: Context) -> None:
        try:
            link = HITLOperator.generate_link_to_ui_from_context(context=context)
        except Exception as exc:  # no [api] base_url: say so, do not fail the approval
            self.log.warning("medic: no link to the approval page: %s", exc)
            return
        self.log.info("medic: approval requested: %s", link)
        conn_id = config.get("notify_conn_id").strip()
        if not conn_id:
            return
        plan = cast("ApproveRemediationOperator", context["task"]).plan  # the task this notifier is on
        text = f"medic: approval needed for {plan['dag_id']}.{plan['task_id']} (incident {plan['incident_id']})"
        try:
            url = base_url_of(BaseHook.get_connection(conn_id))
            httpx.post(url, json={"text": text, "link": link}, timeout=10).raise_for_status()
        except Exception as exc:  # a notification that cannot be sent must not lose the request
            self.log.warning("medic: could not post the approval link to %s: %s", conn_id, exc)


class ApproveRemediationOperator(_Remediating, HITLOperator):
    """One incident's approval request in the Airflow UI; the answer is carried out here."""

    template_fields = ()  # the body quotes logs: never a template
    ui_color = "#fff3cd"

    def __init__(self, *, plan: dict[str, Any], **kwargs: Any) -> None:  # noqa: ANN401 (HITLOperator's arguments)
        self.plan = plan
        p = remediation.Plan.from_dict(plan)
        params = {key: Param(spec.pop("default"), **spec) for key, spec in remediation.approval_params(p).items()}
        super().__init__(
            subject=remediation.approval_subject(p),
            body=p.body or remediation.approval_body(p),
            options=list(remediation.OPTIONS),
            multiple=False,
            params=params,
            **kwargs,
        )

    def execute(self, context: Context) -> None:
        from medic.lineage import events as lineage  # noqa: PLC0415 (as in _run)

        plan = remediation.Plan.from_dict(self.plan)
        ti = context["ti"]
        try:
            with db.connect(config.get("conn_id"), application_name="medic-approve", autocommit=True) as conn:
                remediation.record_approval_request(conn, plan.incident_id, ti.run_id, ti.map_index)
        except Exception as exc:  # only the incidents view's link is missing: still ask
            self.log.warning("medic: could not record where the approval waits: %s", exc)
        if plan.lineage:
            try:
                link = HITLOperator.generate_link_to_ui_from_context(context=context)
            except Exception:  # no [api] base_url: the event goes without the link
                link = None
            timeout = self.response_timeout.total_seconds() if self.response_timeout else None
            assigned = [u["id"] for u in self.assigned_users or []]
            lineage.emit_built(
                f"incident {plan.incident_id}'s approval request",
                lineage.approval_requested_event,
                plan,
                assigned,
                timeout,
                link,
            )
        super().execute(context)  # defers until a person answers (or the request times out)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        plan = remediation.Plan.from_dict(self.plan)
        if event.get("error_type") == "timeout":
            self.log.warning("medic: nobody answered in time; nothing is applied")
            decision = remediation.Decision("expire", "timeout", None, note="no answer in time")
            _emit_answer(plan, decision, None)
            return _run(self.plan, decision)
        answer = super().execute_complete(context, event)
        user = (answer.get("responded_by_user") or {}).get("id")
        option = (answer["chosen_options"] or [None])[0]
        try:
            decision = remediation.interpret_response(plan, answer["chosen_options"], answer["params_input"], user)
        except remediation.RemediationRefused as exc:
            self.log.error("medic: the answer was refused, nothing applied: %s", exc)
            decision = remediation.Decision("escalate", "user", user, note=f"answer refused: {exc}")
            _emit_answer(plan, decision, option)
            return _run(self.plan, decision)
        self.log.info("medic: %s answered %s", user, answer["chosen_options"])
        _emit_answer(plan, decision, option)
        return self.carry_out(decision)
