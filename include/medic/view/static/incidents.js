// medic's incidents page: read-only, fed by /medic/api (Airflow's auth, the UI's session cookie).
// Every text from the API goes in through textContent: logs are untrusted input, never markup.
"use strict";

const API = new URL("../api/", document.baseURI);
const PAGE_SIZE = 25;
const CLASS_COLOURS = {
  network_transient: "#3182ce", rate_limited: "#805ad5", upstream_unavailable: "#d69e2e",
  worker_lost: "#718096", db_contention: "#dd6b20", timeout: "#e53e3e", resource_exhausted: "#b83280",
  missing_input: "#38a169", config_error: "#319795", auth_failure: "#c05621", code_bug: "#9b2c2c",
  data_quality: "#2c7a7b", dependency_error: "#553c9a", undiagnosed: "#cbd5e0",
};
const state = { offset: 0, filters: { status: "", error_class: "", dag_id: "" }, open: new Set() };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === "") continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function link(href, text) {
  return href ? el("a", { href, class: "ui-link" }, text) : null;
}

// Inside Airflow's UI the page sits in a sandboxed frame that may not navigate the top window,
// but it is same-origin: hand the path to the UI's router as its own links do.
function followInAirflow(event) {
  const anchor = event.target.closest("a.ui-link");
  if (!anchor || window.top === window || event.button !== 0 || event.metaKey || event.ctrlKey) return;
  event.preventDefault();
  try {
    window.top.history.pushState(null, "", anchor.getAttribute("href"));
    window.top.dispatchEvent(new PopStateEvent("popstate", { state: null }));
  } catch (_) {
    window.location.href = anchor.href; // the host cannot be reached: open it in the frame
  }
}

async function api(path, params = {}) {
  const url = new URL(path, API);
  for (const [key, value] of Object.entries(params)) if (value !== "" && value != null) url.searchParams.set(key, value);
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401 || response.status === 403) {
    throw new Error("Your Airflow session has ended: sign in again.");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(`${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return response.json();
}

function problem(message) {
  const node = document.getElementById("problem");
  node.hidden = !message;
  node.textContent = message || "";
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// ---- figures and chart ------------------------------------------------------------------------
const latest = { summary: 0, incidents: 0 };

// Only the newest request of each kind may draw: an older, slower answer is dropped.
async function newest(kind, path, params) {
  const ticket = ++latest[kind];
  const data = await api(path, params);
  return ticket === latest[kind] ? data : null;
}

async function loadSummary() {
  const days = document.getElementById("window").value;
  const s = await newest("summary", "summary", { days });
  if (!s) return;
  const shown = {
    failures_captured: s.failures_captured,
    incidents: s.incidents,
    auto_resolved_share: s.auto_resolved_share === null ? "–" : `${Math.round(s.auto_resolved_share * 100)}% (${s.auto_resolved})`,
    approved: s.approved,
    rejected: s.rejected,
    escalated: s.escalated,
    awaiting_approval: s.awaiting_approval,
    median_time_to_fix_seconds: duration(s.median_time_to_fix_seconds),
  };
  for (const [key, value] of Object.entries(shown)) {
    document.querySelector(`[data-figure="${key}"] .value`).textContent = String(value);
  }
  drawChart(s);
}

function drawChart(s) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  const width = 900, height = 160, bottom = 18, top = 14;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const totals = s.per_day.map((d) => Object.values(d.by_class).reduce((a, b) => a + b, 0));
  const max = Math.max(1, ...totals);
  const slot = width / Math.max(1, s.per_day.length);
  const barWidth = Math.max(2, Math.min(40, slot * 0.7));
  s.per_day.forEach((day, i) => {
    let y = height - bottom;
    const x = i * slot + (slot - barWidth) / 2;
    for (const cls of s.classes) {
      const n = day.by_class[cls] || 0;
      if (!n) continue;
      const h = (n / max) * (height - bottom - top);
      y -= h;
      const rect = document.createElementNS(NS, "rect");
      Object.entries({ x, y, width: barWidth, height: h, fill: CLASS_COLOURS[cls] || "#4a5568" })
        .forEach(([k, v]) => rect.setAttribute(k, v));
      rect.dataset.day = day.day;
      rect.dataset.errorClass = cls;
      const title = document.createElementNS(NS, "title");
      title.textContent = `${day.day}: ${n} ${cls}`;
      rect.append(title);
      svg.append(rect);
    }
    if (totals[i]) {
      const label = document.createElementNS(NS, "text");
      label.setAttribute("x", x + barWidth / 2);
      label.setAttribute("y", y - 3);
      label.setAttribute("text-anchor", "middle");
      label.textContent = String(totals[i]);
      svg.append(label);
    }
    if (s.per_day.length <= 31 || i % Math.ceil(s.per_day.length / 15) === 0) {
      const tick = document.createElementNS(NS, "text");
      tick.setAttribute("x", i * slot + slot / 2);
      tick.setAttribute("y", height - 4);
      tick.setAttribute("text-anchor", "middle");
      tick.textContent = day.day.slice(5);
      svg.append(tick);
    }
  });
  document.getElementById("chart").replaceChildren(svg);
  document.getElementById("legend").replaceChildren(
    ...s.classes.map((cls) => el("li", {}, el("i", { style: `background:${CLASS_COLOURS[cls] || "#4a5568"}` }), cls)),
  );
}

// ---- filters and the list ---------------------------------------------------------------------
async function loadFilters() {
  const choices = await api("filters");
  const form = document.getElementById("filters");
  for (const [name, values] of Object.entries(choices)) {
    const select = form.elements[name];
    select.replaceChildren(el("option", { value: "" }, "any"), ...values.map((v) => el("option", { value: v }, v)));
    select.value = state.filters[name];
  }
}

function decisionCell(row) {
  const d = row.decision;
  if (!d.route) return el("td", {}, el("span", { class: "sub" }, "not decided yet"));
  const who = d.approver ? `${d.decision || "answered"} by ${d.approver}` : d.decided_by ? `by ${d.decided_by}` : "";
  return el("td", {}, d.route, el("span", { class: "sub" }, who), el("span", { class: "sub" }, d.reason || ""));
}

function remediationCell(row) {
  const r = row.remediation;
  if (!r) return el("td", {}, el("span", { class: "sub" }, "none applied"));
  const outcome = r.verified_outcome ? `verified ${r.verified_outcome}` : "not verified yet";
  const fix = r.time_to_fix_seconds != null ? `${duration(r.time_to_fix_seconds)} to fix` : "";
  return el("td", {}, r.action, el("span", { class: "sub" }, `${r.status}, ${outcome}`), el("span", { class: "sub" }, fix));
}

function incidentRow(row) {
  const dx = row.diagnosis;
  const tr = el(
    "tr",
    { class: "incident", dataset: { incidentId: row.id, status: row.status } },
    el("td", {}, `#${row.id}`, el("span", { class: `status ${row.status}` }, row.status.replace("_", " "))),
    el("td", {}, when(row.first_failed_at), el("span", { class: "sub" }, `${row.event_count} failure(s)`)),
    el("td", {}, row.dag_id, el("span", { class: "sub" }, row.task_id)),
    el("td", { class: "failure" }, row.exception_type || "", el("span", { class: "sub" }, row.error)),
    dx
      ? el("td", {}, `${dx.error_class} → ${dx.action}`,
          el("span", { class: "sub" }, `confidence ${dx.confidence.toFixed(2)} · ${dx.source}`))
      : el("td", {}, el("span", { class: "sub" }, "not diagnosed yet")),
    decisionCell(row),
    remediationCell(row),
    el("td", { class: "links" },
      link(row.links.task_instance, "failed task"),
      link(row.links.logs, "logs"),
      link(row.links.approval, "approve…"),
      link(row.links.diagnose_run, "diagnosis run")),
  );
  tr.addEventListener("click", (event) => {
    if (event.target.closest("a")) return;
    toggleDetail(row.id, tr);
  });
  return tr;
}

async function toggleDetail(id, tr) {
  const next = tr.nextElementSibling;
  if (next && next.classList.contains("detail")) {
    next.remove();
    state.open.delete(id);
    return;
  }
  state.open.add(id);
  const cell = el("td", { colspan: 8 }, "loading …");
  tr.after(el("tr", { class: "detail", dataset: { incidentId: id } }, cell));
  try {
    cell.replaceChildren(...detailView(await api(`incidents/${id}`)));
  } catch (err) {
    cell.replaceChildren(`Could not load incident ${id}: ${err.message}`);
  }
}

function detailView(d) {
  const parts = [el("div", { class: "detail" })];
  const box = parts[0];
  box.append(el("h2", {}, "Failure"), el("pre", {}, d.error_message || d.error));
  const dx = d.diagnosis_detail;
  if (dx) {
    box.append(
      el("h2", {}, "Diagnosis"),
      el("dl", {},
        el("dt", {}, "class"), el("dd", {}, `${dx.error_class} (${dx.transience})`),
        el("dt", {}, "root cause"), el("dd", {}, dx.root_cause),
        el("dt", {}, "action"), el("dd", {}, `${dx.action} ${JSON.stringify(dx.action_params || {})}`),
        el("dt", {}, "confidence"), el("dd", {}, Number(dx.confidence).toFixed(2)),
        el("dt", {}, "explanation"), el("dd", {}, dx.explanation)),
      el("h2", {}, "Evidence"),
      el("ul", {}, (dx.evidence || []).map((line) => el("li", {}, line))),
    );
  }
  if (d.evidence_neighbours.length) {
    box.append(
      el("h2", {}, "Similar past incidents and runbooks"),
      el("ul", {}, d.evidence_neighbours.map((n) =>
        el("li", {}, `${n.key}: ${n.class || "?"} → ${n.action || "?"}`,
          n.outcome ? ` (verified ${n.outcome})` : "", ` similarity ${Number(n.similarity).toFixed(2)}`))),
    );
  }
  box.append(el("h2", {}, "Decision"), el("dl", {},
    el("dt", {}, "route"), el("dd", {}, d.decision.route || "–"),
    el("dt", {}, "why"), el("dd", {}, d.decision.reason || "–"),
    el("dt", {}, "decided by"), el("dd", {}, d.decision.approver || d.decision.decided_by || "–"),
    el("dt", {}, "when"), el("dd", {}, when(d.decision.decided_at) || "–")));
  if (d.remediation) {
    box.append(el("h2", {}, "Remediation"), el("dl", {},
      el("dt", {}, "action"), el("dd", {}, `${d.remediation.action} ${JSON.stringify(d.remediation_params || {})}`),
      el("dt", {}, "applied"), el("dd", {}, when(d.remediation.applied_at) || "–"),
      el("dt", {}, "verified"), el("dd", {}, d.remediation.verified_outcome
        ? `${d.remediation.verified_outcome} at ${when(d.remediation.verified_at)}` : "not yet"),
      el("dt", {}, "time to fix"), el("dd", {}, duration(d.remediation.time_to_fix_seconds))));
  }
  const shown = d.events.length < d.event_count ? `latest ${d.events.length} of ${d.event_count}` : d.event_count;
  box.append(el("h2", {}, `Failures (${shown})`), el("ul", {}, d.events.map((e) =>
    el("li", {}, `${when(e.failed_at)} · ${e.run_id} · try ${e.try_number} · ${e.state} · `,
      link(e.links.task_instance, "task instance"), " · ", link(e.links.logs, "logs")))));
  return parts;
}

async function loadIncidents() {
  const page = await newest("incidents", "incidents", { ...state.filters, limit: PAGE_SIZE, offset: state.offset });
  if (!page) return;
  if (!page.items.length && page.offset > 0) { // fewer incidents than before: show the last page
    state.offset = Math.max(0, (Math.ceil(page.total / PAGE_SIZE) - 1) * PAGE_SIZE);
    return loadIncidents();
  }
  const body = document.querySelector("#incidents tbody");
  body.replaceChildren(...page.items.map(incidentRow));
  document.getElementById("empty").hidden = page.items.length > 0;
  const last = page.offset + page.items.length;
  document.getElementById("count").textContent =
    page.total ? `${page.offset + 1}–${last} of ${page.total}` : "0 incidents";
  document.getElementById("prev").disabled = page.offset === 0;
  document.getElementById("next").disabled = page.next_offset === null;
  for (const tr of body.querySelectorAll("tr.incident")) {
    const id = Number(tr.dataset.incidentId);
    if (state.open.has(id)) { state.open.delete(id); toggleDetail(id, tr); }
  }
}

async function refresh(what = ["summary", "incidents"]) {
  try {
    const work = [];
    if (what.includes("summary")) work.push(loadSummary());
    if (what.includes("incidents")) work.push(loadIncidents());
    await Promise.all(work);
    problem("");
    document.body.dataset.loaded = "true";
  } catch (err) {
    problem(err.message);
  }
}

function applyTheme() {
  // Follow the Airflow UI's colour mode (it keeps it in localStorage under "theme").
  let mode = "system";
  try { mode = localStorage.getItem("theme") || "system"; } catch (_) { /* storage blocked */ }
  const dark = mode === "dark" || (mode === "system" && matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.classList.toggle("dark", dark);
}

document.addEventListener("DOMContentLoaded", async () => {
  applyTheme();
  document.addEventListener("click", followInAirflow);
  const form = document.getElementById("filters");
  const params = new URLSearchParams(location.search);
  for (const name of Object.keys(state.filters)) state.filters[name] = params.get(name) || "";
  form.addEventListener("change", () => {
    for (const name of Object.keys(state.filters)) state.filters[name] = form.elements[name].value;
    state.offset = 0;
    const query = new URLSearchParams(Object.entries(state.filters).filter(([, v]) => v));
    history.replaceState(null, "", query.toString() ? `?${query}` : location.pathname);
    refresh(["incidents"]);
  });
  // A page turn waits for its page: the buttons come back with it (no skipped pages on a double click).
  const turn = (step) => () => {
    document.getElementById("prev").disabled = document.getElementById("next").disabled = true;
    state.offset = Math.max(0, state.offset + step);
    refresh(["incidents"]);
  };
  document.getElementById("prev").addEventListener("click", turn(-PAGE_SIZE));
  document.getElementById("next").addEventListener("click", turn(PAGE_SIZE));
  document.getElementById("window").addEventListener("change", () => refresh(["summary"]));
  document.getElementById("refresh").addEventListener("click", () => refresh());
  try { await loadFilters(); } catch (err) { problem(err.message); }
  await refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, 30000);
});
