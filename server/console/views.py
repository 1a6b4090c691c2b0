"""The data of the pages that combine several reads, shaped for the templates:
charts drawn, counts kept suppressed, nothing but counts and names."""
from __future__ import annotations

from server.console.auth import Refused
from server.console.charts import Bar, bars, histogram
from server.console.source import CoordinatorSource

# A rule whose reviews find the wrong person this often stands out on the run page.
WRONG_PERSON_ALERT = 0.2
RUNS_CHARTED = 12


def _cells(report: dict, table: str) -> list[Bar]:
    return [Bar(c["key"], c["count"], c["suppressed"]) for c in report.get(table, [])]


def project_page(source: CoordinatorSource, project_id: str) -> dict:
    project = next((p for p in source.projects() if p["project_id"] == project_id), None)
    if project is None:
        raise Refused(404, f"project {project_id!r} does not exist")
    runs = source.runs(project_id)
    return {"project": project, "runs": runs, "schedule": source.schedule(project_id),
            "flags": flags_over_runs(source, runs), "proposals": source.proposals("operator", project_id)}


def flags_over_runs(source: CoordinatorSource, runs: list[dict]) -> dict:
    """Flags per need, per need and tier, and per status across the latest finished runs, oldest first
    (suppressed cells stay so; runs from before tiers were reported have none)."""
    done = [r for r in runs if r["state"] == "done"][:RUNS_CHARTED][::-1]
    columns, needs, tiers, statuses = [], {}, {}, {}
    for r in done:
        report = source.report(r["run_id"])
        columns.append(r)
        for table, into in (("flags_per_need", needs), ("flags_per_need_tier", tiers),
                            ("flags_per_status", statuses)):
            for c in report.get(table, []):
                into.setdefault(c["key"], {})[r["run_id"]] = c
    return {"runs": columns, "needs": dict(sorted(needs.items())), "tiers": dict(sorted(tiers.items())),
            "statuses": dict(sorted(statuses.items()))}


def outcomes_per_rule(report: dict) -> list[dict]:
    """Review outcomes grouped by rule, with the wrong-person share where no cell of the rule is withheld."""
    rules: dict[str, dict] = {}
    for c in report.get("outcomes_per_rule", []):
        rule, _, outcome = c["key"].rpartition("/")
        rules.setdefault(rule, {"rule": rule, "cells": {}, "withheld": False})["cells"][outcome] = c
        rules[rule]["withheld"] |= c["suppressed"]
    for r in rules.values():
        total = sum(c["count"] for c in r["cells"].values())
        wrong = r["cells"].get("wrong_person", {"count": 0})["count"]
        r["share"] = None if r["withheld"] or not total else wrong / total
        r["alert"] = r["share"] is not None and r["share"] >= WRONG_PERSON_ALERT
    return sorted(rules.values(), key=lambda r: r["rule"])


def run_page(source: CoordinatorSource, run_id: str) -> dict:
    report = source.report(run_id)
    return {"run_id": run_id, "report": report, "outcomes": outcomes_per_rule(report),
            "outcome_kinds": sorted({k for r in outcomes_per_rule(report) for k in r["cells"]}),
            "charts": {
                "histogram": lambda pair, title, label: histogram(pair, title, label),
                "links": lambda title, withheld: bars(_cells(report, "linked_pairs_per_department_pair"), title,
                                                      withheld),
                "records": lambda title, withheld: bars(_cells(report, "records_per_department"), title, withheld),
                "needs": lambda title, withheld: bars(_cells(report, "flags_per_need"), title, withheld),
                "statuses": lambda title, withheld: bars(_cells(report, "flags_per_status"), title, withheld),
                "spread": lambda title, withheld: bars(_cells(report, "persons_by_department_count"), title,
                                                       withheld)}}


def audit_page(source: CoordinatorSource, filters: dict, since: float, until: float) -> dict:
    events = source.events(actor=filters["actor"], kind=filters["kind"], department=filters["department"],
                           since=since, until=until)
    return {"filters": filters, "events": events[:500], "total": len(events)}
