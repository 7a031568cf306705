"""Reading back and validating what a file transport wrote: the demo's summary, the tests'
spec validation and ``medic lineage``. Development use only."""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from medic.lineage.events import JOB_TYPES

log = logging.getLogger(__name__)


def project_facet_schemas() -> list[dict[str, Any]]:
    folder = resources.files("medic.lineage").joinpath("schemas")
    return [json.loads(entry.read_text()) for entry in folder.iterdir() if entry.name.endswith(".json")]


class Validator:
    """Checks events against OpenLineage.json and each facet against the schema its
    ``_schemaURL`` names (the official facets from ``spec_dir``, medic's own packaged)."""

    def __init__(self, spec_dir: str) -> None:
        schemas = [json.loads(p.read_text()) for p in Path(spec_dir).rglob("*.json")] + project_facet_schemas()
        self._registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)
        self._known = {s["$id"] for s in schemas}
        self._validator = Draft202012Validator
        self._by_url: dict[str, Any] = {}

    def _for(self, url: str) -> Draft202012Validator:
        if url not in self._by_url:
            self._by_url[url] = self._validator({"$ref": url}, registry=self._registry)
        return self._by_url[url]

    def problems(self, event: dict[str, Any]) -> list[str]:
        found = [
            f"event: {e.message}"
            for e in self._for("https://openlineage.io/spec/2-0-2/OpenLineage.json").iter_errors(event)
        ]
        facets = [("run", k, v) for k, v in ((event.get("run") or {}).get("facets") or {}).items()]
        facets += [("job", k, v) for k, v in ((event.get("job") or {}).get("facets") or {}).items()]
        for dataset in (event.get("inputs") or []) + (event.get("outputs") or []):
            facets += [("dataset", k, v) for k, v in (dataset.get("facets") or {}).items()]
        for where, name, facet in facets:
            url = facet.get("_schemaURL", "")
            if url.split("#")[0] not in self._known:
                found.append(f"{where} facet {name}: no schema known for {url!r}")
                continue
            found += [f"{where} facet {name}: {e.message}" for e in self._for(url).iter_errors(facet)]
        return found


def read_events(path: str) -> list[dict[str, Any]]:
    """The events a file transport wrote (one JSON document per line); a torn line is skipped."""
    events: list[dict[str, Any]] = []
    file = Path(path)
    if not file.exists():
        return events
    for line in file.read_text(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("medic: skipped an unreadable lineage line (%d bytes)", len(line))
    return events


def summarise(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What a file of lineage holds: events per job and state, medic's runs and their parents."""
    per_job: dict[str, dict[str, int]] = {}
    parents_seen = {(e["job"]["name"], e["run"]["runId"]) for e in events}
    medic_runs: dict[str, dict[str, Any]] = {}
    for e in events:
        name = e["job"]["name"]
        per_job.setdefault(name, {}).setdefault(e["eventType"], 0)
        per_job[name][e["eventType"]] += 1
        if name in JOB_TYPES:
            parent = e["run"]["facets"]["parent"]
            run = medic_runs.setdefault(
                e["run"]["runId"],
                {"job": name, "parent_job": parent["job"]["name"], "states": []},
            )
            run["states"].append(e["eventType"])
            run["parent_found"] = (parent["job"]["name"], parent["run"]["runId"]) in parents_seen
    return {
        "events": len(events),
        "medic_events": sum(sum(v.values()) for k, v in per_job.items() if k in JOB_TYPES),
        "per_job": per_job,
        "medic_runs": len(medic_runs),
        "medic_runs_with_parent_in_file": sum(1 for r in medic_runs.values() if r["parent_found"]),
    }
