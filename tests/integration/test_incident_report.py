"""The incidents view's queries against real PostgreSQL: order, pagination, filters, links, figures."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from psycopg.types.json import Jsonb

from medic.capture import outbox
from medic.contract import Diagnosis
from medic.diagnose import incidents
from medic.remediate import remediation
from medic.view import report
from tests.integration.helpers import record

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
CITED = 7  # every seeded diagnosis cites past incident 7 as evidence: the open one in sales


def make_incident(
    conn,
    n: int,
    *,
    dag_id: str = "sales",
    task_id: str = "load",
    failed_at: datetime = NOW,
    error_class: str | None = "network_transient",
    status: str = "diagnosed",
    route: str | None = None,
    remediation_row: tuple[str, str, str | None] | None = None,  # (decided_by, decision, approver)
    time_to_fix: float | None = None,
    run_id: str | None = None,
) -> int:
    """A filed incident as the diagnosis DAG leaves it, then moved to ``status`` as medic would."""
    outbox.record_failure(
        conn, record(n, dag_id=dag_id, task_id=task_id, try_number=2, run_id=run_id), diagnose_retries=False
    )
    owner = f"diagnose-run-{n}"
    ids = outbox.claim_pending(conn, owner=owner, lease_seconds=60, max_attempts=5)
    (incident_id,) = incidents.file_claimed_events(conn, ids, owner).incident_ids
    conn.execute("UPDATE medic.failure_events SET failed_at = %s WHERE incident_id = %s", (failed_at, incident_id))
    conn.execute(
        "UPDATE medic.incidents SET first_failed_at = %s, last_failed_at = %s, status = %s, route = %s,"
        " route_reason = %s, decided_at = %s, time_to_fix_seconds = %s WHERE id = %s",
        (
            failed_at,
            failed_at,
            status,
            route,
            route and f"{route} because",
            route and failed_at,
            time_to_fix,
            incident_id,
        ),
    )
    if error_class:
        diagnosis = Diagnosis(
            error_class=error_class,
            transience="transient",
            root_cause="the upstream refused the connection",
            evidence=["connection refused"],
            action="retry",
            confidence=0.8,
            explanation="seen before",
        )
        (diagnosis_id,) = conn.execute(
            "INSERT INTO medic.diagnoses (incident_id, source, error_class, action, confidence, automatic,"
            " decision_reason, diagnosis, neighbours) VALUES (%s, 'retrieval', %s, 'retry', 0.8, false, 'test', %s,"
            " %s) RETURNING id",
            (
                incident_id,
                error_class,
                Jsonb(diagnosis.model_dump(mode="json")),
                Jsonb(
                    [
                        {
                            "key": f"incident:{CITED}",
                            "class": error_class,
                            "action": "retry",
                            "outcome": "resolved",
                            "similarity": 0.91,
                            "kind": "incident",
                            "via": "vector",
                        }
                    ]
                ),
            ),
        ).fetchone()
        conn.execute("UPDATE medic.incidents SET diagnosis_id = %s WHERE id = %s", (diagnosis_id, incident_id))
    if remediation_row:
        decided_by, decision, approver = remediation_row
        verified = "resolved" if status == "resolved" else "failed" if status == "failed" else None
        conn.execute(
            "INSERT INTO medic.remediations (incident_id, action, decided_by, approver, decision, status,"
            " applied_at, verified_outcome, verified_at) VALUES (%s, 'retry', %s, %s, %s, %s, %s, %s, %s)",
            (
                incident_id,
                decided_by,
                approver,
                decision,
                "applied" if decision == "apply" else "recorded",
                failed_at if decision == "apply" else None,
                verified,
                failed_at + timedelta(seconds=time_to_fix or 0) if verified else None,
            ),
        )
    return incident_id


@pytest.fixture
def seeded(it_conn):
    """Seven incidents over three days, three DAGs, every route and outcome the figures count."""
    day = timedelta(days=1)
    ids = {
        "auto_fixed": make_incident(
            it_conn,
            1,
            status="resolved",
            route="auto",
            remediation_row=("auto", "apply", None),
            time_to_fix=10,
            failed_at=NOW - 2 * day,
        ),
        "approved_fixed": make_incident(
            it_conn,
            2,
            dag_id="orders",
            status="resolved",
            route="approval",
            remediation_row=("user", "apply", "alice"),
            time_to_fix=40,
            failed_at=NOW - day,
        ),
        "auto_fixed_2": make_incident(
            it_conn,
            3,
            task_id="extract",
            status="resolved",
            route="auto",
            remediation_row=("auto", "apply", None),
            time_to_fix=20,
            failed_at=NOW - day,
        ),
        "rejected": make_incident(
            it_conn,
            4,
            dag_id="orders",
            task_id="t2",
            status="rejected",
            route="approval",
            remediation_row=("user", "reject", "bob"),
            error_class="code_bug",
        ),
        "escalated": make_incident(
            it_conn, 5, dag_id="billing", status="escalated", route="escalate", error_class="code_bug"
        ),
        "waiting": make_incident(
            it_conn,
            6,
            dag_id="billing",
            task_id="t3",
            status="awaiting_approval",
            route="approval",
            run_id="scheduled__2026-11-21T00:00:00+00:00",
        ),
        "open": make_incident(it_conn, 7, task_id="t4", status="open", error_class=None),
        "old": make_incident(
            it_conn,
            8,
            task_id="t5",
            status="resolved",
            route="auto",
            remediation_row=("auto", "apply", None),
            time_to_fix=999,
            failed_at=NOW - 40 * day,
        ),
    }
    assert ids["open"] == CITED
    return ids


def test_incidents_come_newest_first_and_pages_cover_them_all_once(it_conn, seeded) -> None:
    everything = report.list_incidents(it_conn, report.Filters(), limit=100)
    assert everything.total == len(seeded)
    assert [row.id for row in everything.items] == sorted(seeded.values(), reverse=True)

    seen, offset = [], 0
    while offset is not None:
        page = report.list_incidents(it_conn, report.Filters(), limit=3, offset=offset)
        assert page.total == len(seeded) and len(page.items) <= 3
        seen += [row.id for row in page.items]
        offset = page.next_offset
    assert seen == [row.id for row in everything.items]
    assert report.list_incidents(it_conn, report.Filters(), limit=3, offset=99).items == []
    assert report.list_incidents(it_conn, report.Filters(), limit=10_000).limit == report.MAX_PAGE


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (report.Filters(status="resolved"), {"auto_fixed", "approved_fixed", "auto_fixed_2", "old"}),
        (report.Filters(dag_id="orders"), {"approved_fixed", "rejected"}),
        (report.Filters(error_class="code_bug"), {"rejected", "escalated"}),
        (report.Filters(error_class=report.UNDIAGNOSED), {"open"}),
        (report.Filters(dag_id="billing", status="escalated"), {"escalated"}),
        (report.Filters(dag_id="nowhere"), set()),
    ],
)
def test_filters_by_status_class_and_dag(it_conn, seeded, filters, expected) -> None:
    page = report.list_incidents(it_conn, filters, limit=50)
    assert {row.id for row in page.items} == {seeded[name] for name in expected}
    assert page.total == len(expected)


def test_only_incidents_of_readable_dags_are_listed_counted_or_shown(it_conn, seeded) -> None:
    page = report.list_incidents(it_conn, report.Filters(), readable_dags={"orders"})
    assert {row.dag_id for row in page.items} == {"orders"} and page.total == 2
    assert report.incident_detail(it_conn, seeded["escalated"], readable_dags={"orders"}) is None
    assert report.incident_detail(it_conn, seeded["rejected"], readable_dags={"orders"}) is not None
    figures = report.summary(
        it_conn, since=NOW - timedelta(days=6), until=NOW + timedelta(hours=1), readable_dags={"orders"}
    )
    assert (figures.incidents, figures.failures_captured, figures.approved, figures.rejected) == (2, 2, 1, 1)
    assert report.filter_choices(it_conn, {"orders"})["dag_id"] == ["orders"]
    assert report.list_incidents(it_conn, report.Filters(), readable_dags=set()).total == 0
    # a retrieved past incident of another DAG is not shown to a caller who may not read that DAG
    assert [n["key"] for n in report.incident_detail(it_conn, seeded["rejected"]).evidence_neighbours] == [
        f"incident:{seeded['open']}"
    ]
    assert report.incident_detail(it_conn, seeded["rejected"], readable_dags={"orders"}).evidence_neighbours == []
    assert (
        len(report.incident_detail(it_conn, seeded["rejected"], readable_dags={"orders", "sales"}).evidence_neighbours)
        == 1
    )


def test_an_error_message_of_only_whitespace_does_not_break_the_list(it_conn, seeded) -> None:
    it_conn.execute("UPDATE medic.incidents SET error_message = %s WHERE id = %s", (" \n ", seeded["open"]))
    rows = {row.id: row for row in report.list_incidents(it_conn, report.Filters(), limit=50).items}
    assert rows[seeded["open"]].error == ""


def test_rows_carry_diagnosis_decision_remediation_and_links(it_conn, seeded) -> None:
    rows = {row.id: row for row in report.list_incidents(it_conn, report.Filters(), limit=50, ui_base="/af").items}
    approved = rows[seeded["approved_fixed"]]
    assert approved.diagnosis and approved.diagnosis.error_class == "network_transient"
    assert (approved.decision.route, approved.decision.decided_by, approved.decision.approver) == (
        "approval",
        "user",
        "alice",
    )
    assert approved.remediation and approved.remediation.verified_outcome == "resolved"
    assert approved.remediation.time_to_fix_seconds == 40
    assert approved.links.task_instance == "/af/dags/orders/runs/manual__run_2/tasks/load"
    assert approved.links.logs == "/af/dags/orders/runs/manual__run_2/tasks/load?try_number=2"
    assert approved.links.diagnose_run == "/af/dags/medic_diagnose/runs/diagnose-run-2"
    assert approved.links.approval is None

    assert rows[seeded["auto_fixed"]].decision.decided_by == "policy"
    assert rows[seeded["escalated"]].decision.decided_by == "policy"
    assert rows[seeded["escalated"]].remediation is None
    assert rows[seeded["rejected"]].remediation is None and rows[seeded["rejected"]].decision.decision == "reject"
    assert rows[seeded["open"]].diagnosis is None and rows[seeded["open"]].decision.route is None

    waiting = rows[seeded["waiting"]]
    # a run id with ':' and '+' is one path segment in the link
    assert waiting.links.task_instance == (
        "/af/dags/billing/runs/scheduled__2026-11-21T00%3A00%3A00%2B00%3A00/tasks/t3"
    )
    assert waiting.links.approval is None  # the approval task has not said where it waits yet
    remediation.record_approval_request(it_conn, seeded["waiting"], "asset_triggered__x", 3)
    waiting = report.incident_detail(it_conn, seeded["waiting"], ui_base="/af")
    assert waiting.links.approval == (
        "/af/dags/medic_diagnose/runs/asset_triggered__x/tasks/approve_remediation/mapped/3/required_actions"
    )


def test_detail_has_the_whole_story(it_conn, seeded) -> None:
    detail = report.incident_detail(it_conn, seeded["approved_fixed"])
    assert detail.error_message == "connection refused"
    assert detail.diagnosis_detail["root_cause"] == "the upstream refused the connection"
    assert detail.evidence_neighbours[0]["key"] == f"incident:{seeded['open']}"
    assert [(e.run_id, e.try_number) for e in detail.events] == [("manual__run_2", 2)]
    assert detail.events[0].links.logs.endswith("?try_number=2")
    assert report.incident_detail(it_conn, 10_000) is None


def test_headline_figures_and_the_chart_over_a_window(it_conn, seeded) -> None:
    figures = report.summary(it_conn, since=NOW - timedelta(days=6), until=NOW + timedelta(hours=1))
    assert figures.incidents == 7  # the 40-day-old one is outside the window
    assert figures.failures_captured == 7
    assert figures.auto_resolved == 2
    assert figures.auto_resolved_share == pytest.approx(2 / 7, abs=1e-4)
    assert (figures.approved, figures.rejected, figures.escalated, figures.awaiting_approval) == (1, 1, 1, 1)
    assert figures.median_time_to_fix_seconds == 20  # of 10, 20 and 40: not the old incident's 999
    assert figures.per_day[0].day.isoformat() == "2026-11-15"
    assert len(figures.per_day) == 7
    by_day = {d.day.isoformat(): d.by_class for d in figures.per_day}
    assert by_day["2026-11-19"] == {"network_transient": 1}
    assert by_day["2026-11-20"] == {"network_transient": 2}
    assert by_day["2026-11-21"] == {"code_bug": 2, "network_transient": 1, report.UNDIAGNOSED: 1}
    assert by_day["2026-11-16"] == {}
    assert figures.classes == ["code_bug", "network_transient", report.UNDIAGNOSED]

    empty = report.summary(it_conn, since=NOW + timedelta(days=5), until=NOW + timedelta(days=6))
    assert (empty.incidents, empty.auto_resolved_share, empty.median_time_to_fix_seconds) == (0, None, None)
