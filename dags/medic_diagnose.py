"""medic_diagnose: every failure in the deployment, claimed, grouped into incidents, diagnosed.

Scheduled on the asset ``medic_task_failures``, whose watcher turns the failure outbox into
asset events. New incidents are diagnosed from failure memory (scrub, fingerprint, embed,
retrieve runbooks and verified incidents), then, with a generation backend configured, by a
model in the generation environment: ``@task.external_python`` on the ``llm`` queue, an
interpreter Airflow never imports (``[medic] llm_python``), holding a slot of the
``[medic] llm_pool`` pool, within ``[medic] max_generations_per_hour``. The policy then decides per
incident: automatic, approval by a person, or escalation. Automatic fixes are applied at once
(``remediate_automatic``, one mapped task per incident); each incident that needs a person gets
an approval request in the UI (``approve_remediation``, Airflow's HITL operator, mapped). Fixes
go through Airflow's REST API with the service credential of ``[medic] api_conn_id``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, get_current_context, task

from assets.medic_assets import MEDIC_TASK_FAILURES
from medic import config
from medic.remediate.operators import ApprovalLinkNotifier, ApproveRemediationOperator, RemediateOperator

LLM_BACKEND = config.get("llm_backend").strip().lower() or "none"
LLM_PYTHON = config.get("llm_python").strip()
LLM_QUEUE = config.get("llm_queue")
# the budget guardrail: generation holds a slot of this pool (create it with the deployment)
LLM_POOL = config.get("llm_pool").strip() or "default_pool"
# the batch's own limit plus room for the interpreter to start; past it the task is killed
LLM_TASK_TIMEOUT = timedelta(seconds=float(config.get("llm_timeout_seconds")) + 120)
APPROVERS = [{"id": user, "name": user} for user in config.get("approvers").split(",") if user.strip()]
APPROVAL_TIMEOUT = timedelta(minutes=config.get_float("approval_timeout_minutes"))


@dag(
    dag_id="medic_diagnose",
    schedule=[MEDIC_TASK_FAILURES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=config.get_int("diagnose_max_active_runs"),
    tags=["medic"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    doc_md=__doc__,
)
def medic_diagnose() -> None:  # noqa: C901 (the wiring: one branch per generation backend)
    @task
    def claim_failure_events() -> list[int]:
        from medic.tasks import pipeline

        context = get_current_context()
        pipeline.log.info("medic: woken by %s", pipeline.wakeup_summary(context["triggering_asset_events"]))
        return pipeline.claim_failure_events(owner=context["run_id"])

    @task
    def file_incidents(event_ids: list[int]) -> dict:
        from medic.tasks import pipeline

        return pipeline.file_incidents(event_ids, owner=get_current_context()["run_id"])

    @task
    def diagnose_incidents(filing: dict) -> dict:
        from medic.tasks import pipeline

        return pipeline.diagnose_incidents(filing)

    def generate_diagnoses(diagnosed: dict) -> dict | None:
        """Runs in the generation environment: only medic.llm is imported there."""
        from medic.llm import worker

        request = diagnosed.get("request")
        return worker.run(request) if request else None

    @task(trigger_rule="all_done")
    def decide_incidents(diagnosed: dict) -> list[dict]:
        """Returns the automatic plans (mapped at once); the approvals go on under their own key."""
        from medic.tasks import pipeline

        ti = get_current_context()["ti"]
        generated = None
        if LLM_BACKEND != "none":  # absent when generation failed: then every incident escalates
            generated = ti.xcom_pull(task_ids="generate_diagnoses")
        result = pipeline.decide_incidents(diagnosed, generated)
        ti.xcom_push(key="approvals", value=result["approvals"])
        return result["auto"]

    @task
    def prepare_approvals() -> list[dict]:
        from medic.tasks import pipeline

        plans = get_current_context()["ti"].xcom_pull(task_ids="decide_incidents", key="approvals")
        return pipeline.prepare_approvals(plans)

    diagnosed = diagnose_incidents(file_incidents(claim_failure_events()))
    decided = decide_incidents(diagnosed)
    RemediateOperator.partial(task_id="remediate_automatic", retries=3).expand(plan=decided)
    approvals = prepare_approvals()
    decided >> approvals
    ApproveRemediationOperator.partial(
        task_id="approve_remediation",
        assigned_users=APPROVERS or None,
        response_timeout=APPROVAL_TIMEOUT,
        notifiers=[ApprovalLinkNotifier()],
        retries=0,
    ).expand(plan=approvals)
    if LLM_BACKEND == "openai":  # plain HTTP: no second environment needed, and the key stays in this task

        @task(
            task_id="generate_diagnoses",
            queue=LLM_QUEUE,
            pool=LLM_POOL,
            retries=0,
            execution_timeout=LLM_TASK_TIMEOUT,
        )
        def generate_over_http(diagnosed: dict) -> dict | None:
            from medic.tasks import pipeline

            return pipeline.generate_in_process(diagnosed)

        generate_over_http(diagnosed) >> decided
    elif LLM_BACKEND != "none":
        isolated = task.external_python(
            python=LLM_PYTHON or "medic-llm-python-not-configured",
            expect_airflow=False,
            task_id="generate_diagnoses",
            queue=LLM_QUEUE,
            pool=LLM_POOL,
            retries=0,
            execution_timeout=LLM_TASK_TIMEOUT,
        )(generate_diagnoses)
        isolated(diagnosed) >> decided


medic_diagnose()
