"""Asset definitions: the failure stream (with its watcher), knowledge, and remediations."""

from __future__ import annotations

from airflow.sdk import Asset, AssetWatcher

from medic.triggers.watchers import FailureEventTrigger, RunbookChangeTrigger, VerifiedOutcomeTrigger

#: Every failed task in the deployment becomes an event on this asset (via the outbox).
MEDIC_TASK_FAILURES = Asset(
    name="medic_task_failures",
    uri="medic://failures",
    group="medic",
    watchers=[AssetWatcher(name="medic_failure_outbox", trigger=FailureEventTrigger())],
)

#: The knowledge base's sources: changes when a runbook changes or a fix is verified (two
#: watchers); medic_knowledge_refresh re-embeds runbooks and learns verified outcomes on each.
MEDIC_KNOWLEDGE = Asset(
    name="medic_knowledge",
    uri="medic://knowledge",
    group="medic",
    watchers=[
        AssetWatcher(name="medic_runbook_changes", trigger=RunbookChangeTrigger()),
        AssetWatcher(name="medic_verified_outcomes", trigger=VerifiedOutcomeTrigger()),
    ],
)

#: The remediation log; medic_diagnose's outlet once it decides or applies a fix.
MEDIC_REMEDIATIONS = Asset(name="medic_remediations", uri="medic://remediations", group="medic")
