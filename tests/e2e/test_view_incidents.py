"""The incidents view on the real api-server: Airflow's auth, pagination, filters, links, figures,
and the page itself in headless Chromium after the demo's failures."""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import httpx
import pytest

from medic.remediate.remediation import APPROVAL_DAG, APPROVAL_TASK, approval_subject_suffix
from medic_dev.cli import DEMO_DAGS
from medic_dev.stack import ADMIN_USER
from tests.e2e.helpers import query, wait_filed, wait_for

pytestmark = pytest.mark.e2e

API = "/medic/api"
ARTIFACTS = Path(os.environ.get("MEDIC_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")


@pytest.fixture(scope="module")
def demo_incidents(stack, client) -> dict[str, int]:
    """The demo's four failing pipelines, run once more; each DAG's incident once medic decided it."""
    runs = {dag_id: client.trigger(dag_id) for dag_id in DEMO_DAGS}
    incidents: dict[str, int] = {}
    for dag_id, run_id in runs.items():
        assert client.wait_for_run(dag_id, run_id, timeout=240) == "failed"
        expected = 2 if dag_id == "demo_flaky_api" else 1  # its first try is retried by Airflow itself
        events = wait_filed(stack, dag_id, run_id, expected, 120)
        incidents[dag_id] = next(e["incident_id"] for e in events if e["status"] == "processed")
    assert len(incidents) == len(DEMO_DAGS) >= 4
    wait_for(
        lambda: all(
            query(
                stack,
                # decided, and a request for a person parked where the approval task says it is
                "SELECT route IS NOT NULL AND NOT (status = 'awaiting_approval' AND approval_run_id IS NULL)"
                " FROM medic.incidents WHERE id = %s",
                (i,),
            )[0][0]
            for i in incidents.values()
        ),
        240,
        "the demo's incidents to be decided and their approval requests parked",
    )
    return incidents


def api(client, path: str, **params) -> dict:
    return client.get(API + path, **params)


def test_every_endpoint_and_the_page_need_airflow_authentication(stack, client) -> None:
    with httpx.Client(base_url=stack.api_url, timeout=30) as anonymous:
        for path in ("/incidents", "/incidents/1", "/summary", "/filters"):
            assert anonymous.get(API + path).status_code == 401, path
            forged = anonymous.get(API + path, headers={"Authorization": "Bearer not-a-jwt"})
            assert forged.status_code in (401, 403), path
        page = anonymous.get("/medic/ui/incidents")
        assert page.status_code == 303 and "/auth/login" in page.headers["location"]
        assert "next=" in page.headers["location"]
    signed_in = client.request("GET", "/medic/ui/incidents")
    assert signed_in.status_code == 200 and 'id="incidents"' in signed_in.text


def test_the_plugin_registers_the_app_and_a_nav_entry(client) -> None:
    (medic,) = [p for p in client.get("/api/v2/plugins", limit=100)["plugins"] if p["name"] == "medic"]
    assert [app["url_prefix"] for app in medic["fastapi_apps"]] == ["/medic"]
    (view,) = medic["external_views"]
    assert (view["href"], view["destination"], view["url_route"]) == ("/medic/ui/incidents", "nav", "medic-incidents")


def test_pages_walk_every_incident_once_newest_first(stack, client, demo_incidents) -> None:
    (count,) = query(stack, "SELECT count(*) FROM medic.incidents")[0]
    seen, offset = [], 0
    while offset is not None:
        page = api(client, "/incidents", limit=7, offset=offset)
        assert page["total"] == count and len(page["items"]) <= 7
        seen += [row["id"] for row in page["items"]]
        offset = page["next_offset"]
    assert len(seen) == count == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    assert set(demo_incidents.values()) <= set(seen)
    for bad in ({"limit": 0}, {"limit": 10_000}, {"offset": -1}, {"status": "bogus"}):
        assert client.request("GET", API + "/incidents", params=bad).status_code == 422, bad


def test_filters_by_dag_class_and_status(stack, client, demo_incidents) -> None:
    for dag_id, incident_id in demo_incidents.items():
        rows = api(client, "/incidents", dag_id=dag_id, limit=200)["items"]
        assert rows and {row["dag_id"] for row in rows} == {dag_id}
        assert incident_id in [row["id"] for row in rows]
        incident = next(row for row in rows if row["id"] == incident_id)
        by_class = api(client, "/incidents", error_class=incident["diagnosis"]["error_class"], limit=200)
        assert incident_id in [row["id"] for row in by_class["items"]]
        assert {row["diagnosis"]["error_class"] for row in by_class["items"]} == {incident["diagnosis"]["error_class"]}
        for _ in range(3):  # an approval may time out between the two reads
            status = api(client, f"/incidents/{incident_id}")["status"]
            by_status = api(client, "/incidents", status=status, dag_id=dag_id, limit=200)["items"]
            if incident_id in [row["id"] for row in by_status]:
                break
        assert incident_id in [row["id"] for row in by_status]
        assert {row["status"] for row in by_status} == {status}
    (statuses,) = query(stack, "SELECT array_agg(DISTINCT status) FROM medic.incidents")[0]
    choices = api(client, "/filters")
    assert set(statuses) <= set(choices["status"])
    assert set(DEMO_DAGS) <= set(choices["dag_id"])


def test_links_lead_to_the_failed_task_instance_and_the_waiting_approval(stack, client, demo_incidents) -> None:
    asked = 0
    for incident_id in demo_incidents.values():
        detail = api(client, f"/incidents/{incident_id}")
        assert detail["diagnosis_detail"]["error_class"] == detail["diagnosis"]["error_class"]
        assert detail["events"], "an incident lists its failures"
        parts = urlparse(detail["links"]["task_instance"]).path.split("/")
        dag_id, run_id, task_id = unquote(parts[2]), unquote(parts[4]), unquote(parts[6])
        ti = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        assert (ti["dag_id"], ti["task_id"]) == (detail["dag_id"], detail["task_id"])
        assert parse_qs(urlparse(detail["links"]["logs"]).query)["try_number"] == [
            str(detail["events"][-1]["try_number"])
        ]
        (approval_run, map_index) = query(
            stack, "SELECT approval_run_id, approval_map_index FROM medic.incidents WHERE id = %s", (incident_id,)
        )[0]
        if approval_run is None:
            assert detail["links"]["approval"] is None, "decided without a person: nothing to approve"
            continue
        asked += 1
        # where the approval task said it waits is where Airflow holds the request for this incident
        hitl = client.hitl_detail(APPROVAL_DAG, approval_run, APPROVAL_TASK, map_index)
        assert hitl["subject"].endswith(approval_subject_suffix(incident_id))
        if detail["status"] == "awaiting_approval":
            # the UI's route for a mapped task instance's request, as its own HITL links build it
            parts = urlparse(detail["links"]["approval"]).path.split("/")
            assert (parts[2], unquote(parts[4]), parts[6], parts[7], parts[8], parts[9]) == (
                APPROVAL_DAG,
                approval_run,
                APPROVAL_TASK,
                "mapped",
                str(map_index),
                "required_actions",
            )
        else:
            assert detail["links"]["approval"] is None, "no link once the request is answered or expired"
    assert asked, "the demo's code_bug and missing_input incidents ask a person"
    assert client.request("GET", API + "/incidents/987654321").status_code == 404


def test_headline_figures_agree_with_the_records(stack, client, demo_incidents) -> None:
    figures = api(client, "/summary", days=7)
    since = datetime.fromisoformat(figures["since"])
    assert since == datetime.combine(
        (datetime.now(timezone.utc) - timedelta(days=6)).date(), datetime.min.time(), timezone.utc
    )
    counts = (
        "SELECT (SELECT count(*) FROM medic.incidents WHERE first_failed_at >= %(s)s),"
        " (SELECT count(*) FROM medic.failure_events WHERE failed_at >= %(s)s),"
        " (SELECT count(*) FROM medic.incidents WHERE first_failed_at >= %(s)s AND route = 'auto'"
        "   AND status = 'resolved'),"
        " (SELECT count(*) FROM medic.incidents WHERE first_failed_at >= %(s)s AND status = 'awaiting_approval')"
    )
    for _ in range(5):  # an approval may time out between two reads: compare a quiet moment
        before = query(stack, counts, {"s": since})[0]
        figures = api(client, "/summary", days=7)
        if query(stack, counts, {"s": since})[0] == before:
            break
    (incidents, failures, resolved_auto, awaiting) = before
    assert (figures["incidents"], figures["failures_captured"]) == (incidents, failures)
    assert (figures["auto_resolved"], figures["awaiting_approval"]) == (resolved_auto, awaiting)
    assert sum(sum(day["by_class"].values()) for day in figures["per_day"]) == incidents
    assert len(figures["per_day"]) == 7


# ---- the page in a browser -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, driven through its own chromedriver (no download)."""
    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.fail("the browser test needs Debian's chromium and chromium-driver packages (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, "--window-size=1600,1300"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_the_page_shows_the_demos_incidents_and_figures_inside_the_airflow_ui(
    stack, client, demo_incidents, browser
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import Select, WebDriverWait

    # the page re-renders its rows on every fetch: an element read mid-render is read again
    wait = WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,))
    browser.get(stack.api_url + "/medic/ui/incidents")  # no session yet: Airflow's login, then back
    wait.until(until.presence_of_element_located((By.NAME, "username"))).send_keys(ADMIN_USER)
    browser.find_element(By.NAME, "password").send_keys(stack.admin_password())
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(until.url_contains("/medic/ui/incidents"))

    browser.get(stack.api_url + "/plugin/medic-incidents")  # the nav entry: the page inside Airflow's UI
    frame = wait.until(until.presence_of_element_located((By.CSS_SELECTOR, "iframe[src*='/medic/ui/incidents']")))
    nav = browser.find_element(By.XPATH, "//a[contains(@href, '/plugin/medic-incidents')]")
    assert "Incidents" in nav.text
    browser.switch_to.frame(frame)
    wait.until(until.presence_of_element_located((By.CSS_SELECTOR, "body[data-loaded='true']")))

    keys = ("failures_captured", "incidents", "approved", "rejected", "awaiting_approval")

    def figures_match(b) -> dict | None:
        shown = {key: b.find_element(By.CSS_SELECTOR, f"[data-figure='{key}'] .value").text for key in keys}
        figures = api(client, "/summary", days=7)
        if shown == {key: str(figures[key]) for key in keys}:
            return figures
        b.find_element(By.ID, "refresh").click()  # an approval timed out meanwhile: fetch again
        return None

    figures = wait.until(figures_match)
    wait.until(
        lambda b: (
            {bar.get_attribute("data-error-class") for bar in b.find_elements(By.CSS_SELECTOR, "#chart rect")}
            == set(figures["classes"])
        )
    )
    first_page = [row["id"] for row in api(client, "/incidents", limit=25)["items"]]
    wait.until(
        lambda b: (
            [int(r.get_attribute("data-incident-id")) for r in b.find_elements(By.CSS_SELECTOR, "tr.incident")]
            == first_page
        )
    )

    dag_filter = Select(browser.find_element(By.CSS_SELECTOR, "#filters select[name='dag_id']"))
    for dag_id, incident_id in demo_incidents.items():
        dag_filter.select_by_value(dag_id)
        wait.until(
            until.presence_of_element_located((By.CSS_SELECTOR, f"tr.incident[data-incident-id='{incident_id}']"))
        )
        wait.until(
            lambda b, d=dag_id: (
                (rows := b.find_elements(By.CSS_SELECTOR, "tr.incident")) and all(d in r.text for r in rows)
            )
        )
        wait.until(
            lambda b, i=incident_id: "→" in b.find_element(By.CSS_SELECTOR, f"tr.incident[data-incident-id='{i}']").text
        )  # the diagnosis is shown

    def open_story(b) -> bool:  # the last demo incident's; a re-render mid-click is clicked again
        row = b.find_element(By.CSS_SELECTOR, f"tr.incident[data-incident-id='{incident_id}']")
        if not b.find_elements(By.CSS_SELECTOR, f"tr.detail[data-incident-id='{incident_id}']"):
            row.find_element(By.CSS_SELECTOR, "td").click()
        return bool(b.find_elements(By.CSS_SELECTOR, f"tr.detail[data-incident-id='{incident_id}'] .detail"))

    wait.until(open_story)
    detail = wait.until(
        until.visibility_of_element_located((By.CSS_SELECTOR, f"tr.detail[data-incident-id='{incident_id}'] .detail"))
    )
    for heading in ("Failure", "Diagnosis", "Evidence", "Decision", "Failures"):
        assert heading in detail.text
    links = wait.until(
        lambda b: [
            a.get_attribute("href")
            for a in b.find_elements(By.CSS_SELECTOR, f"tr.incident[data-incident-id='{incident_id}'] td.links a")
        ]
    )
    assert any(f"/dags/{dag_id}/runs/" in href for href in links), links
    dag_filter.select_by_value("")
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "tr.incident")) == len(first_page))

    browser.switch_to.default_content()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "incidents-view.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000

    # A link leaves the frame: Airflow's UI opens the failed task instance in its own window.
    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe[src*='/medic/ui/incidents']"))
    selector = f"tr.incident[data-incident-id='{incident_id}'] td.links a"
    target = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, selector).get_attribute("href"))
    wait.until(lambda b: b.find_element(By.CSS_SELECTOR, selector).click() or True)
    browser.switch_to.default_content()
    wait.until(lambda b: urlparse(b.current_url).path == urlparse(target).path)
    wait.until(lambda b: not b.find_elements(By.CSS_SELECTOR, "iframe[src*='/medic/ui/incidents']"))
