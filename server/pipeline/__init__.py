"""One linkage run as a pipeline of named steps:

1. ``link``: load the departments' current uploads, compare every
   department pair, group the records into persons;
2. ``needs``: each person's facts (households, absence), the rule pack
   evaluated on them;
3. ``flags``: each need routed by the disclosure policy, held back where it
   could answer a probe, followed over time;
4. ``report``: the counts, suppressed below k so none can be subtracted out,
   and the signals of probing per department;

then the links, the flags and the report are stored in one transaction.
"""
from __future__ import annotations

from datetime import date

from fedlink.rules import idle_rules, load_rulepack
from fedlink.schema import DEPARTMENTS, Project
from server import queries as q
from server import store as t
from server.engine.base import Engine
from server.pipeline import increments
from server.pipeline.flags import route_flags, track_over_time
from server.pipeline.link import Linkage, PhaseProgress, link, load_department
from server.pipeline.needs import find_needs
from server.pipeline.probes import first_seen, previous_run_uploads, probe_signals, short_lived_records
from server.pipeline.report import build_report
from server.store import Store


class RunEnded(RuntimeError):
    """The run was failed (stalled, recovered) while its worker computed: a late result is not stored."""


def execute_run(store: Store, project: Project, run_id: str, as_of: date, used: dict[str, str], engine: Engine,
                progress: PhaseProgress, incremental: bool = True) -> dict:
    """`incremental`: re-score only the pairs of records new or changed since the project's last run,
    and leave this run's pairs for the next (server/pipeline/increments.py); else link everything."""
    order = [d for d in DEPARTMENTS if d in used]
    progress("load", 0, len(order), "loading encoded records")
    with store.read() as conn:
        departments = []
        for i, d in enumerate(order):
            departments.append(load_department(conn, d, used[d], project))
            progress("load", i + 1, len(order), f"{d}: {len(departments[-1].ids)} records")
        baseline = previous_run_uploads(conn, project.project_id, run_id)
        new_records = {d.department: first_seen(conn, d, baseline.get(d.department), used[d.department])
                       for d in departments}
        short_lived = short_lived_records(conn, project.project_id, run_id)
        previous = increments.load_previous(conn, project.project_id, run_id, departments, used) \
            if incremental else None
    linkage = link(departments, project.schema.threshold, engine, progress, auto=project.schema.auto_threshold,
                   schema=project.schema, previous=previous)
    pack = load_rulepack(project.rules_toml, source=f"project {project.project_id} rules")
    progress("rules", 0, linkage.persons, "evaluating the rule pack")
    facts, found = find_needs(linkage, pack, engine)
    flag_rows = route_flags(linkage, found, facts, pack, new_records)
    progress("rules", linkage.persons, linkage.persons, f"{len(found)} needs found")
    ref_of = {int(i): ref for d in departments for i, ref in zip(d.ids.tolist(), d.refs)}
    progress("store", 0, len(flag_rows), "storing links and flags")
    with store.write() as conn:
        if q.run(conn, run_id).state not in ("queued", "running"):  # failed as stalled, or recovered, meanwhile
            raise RunEnded(f"run {run_id} was ended while it computed; its links and flags are not stored")
        flag_rows = track_over_time(conn, project.project_id, run_id, as_of, flag_rows, ref_of, pack)
        report = build_report(linkage, flag_rows, pack.suppression_k, facts)
        # What this run could not look for: rules reading departments it had no upload from.
        report["idle_rules"] = [{"rule": i.rule, "need": i.need, "missing": [list(m) for m in i.missing]}
                                for i in idle_rules(pack, project.departments, used)]
        report["probe_signals"] = probe_signals(order, new_records, short_lived, flag_rows)
        _store_links(conn, run_id, linkage)
        if linkage.carried is not None:
            report["incremental"] = linkage.carried.summary
            if incremental:
                increments.store_carried(conn, project.project_id, run_id, departments, linkage.carried)
        if flag_rows:
            conn.execute(t.flags.insert(), [{"run_id": run_id, **r} for r in flag_rows])
    progress("store", len(flag_rows), len(flag_rows), "stored")
    return report


def _store_links(conn, run_id: str, linkage: Linkage) -> None:
    # Chunk by chunk: at 1M persons (3.3M records) the rows as one list of
    # dicts would hold ~1 GB at once.
    for d, dept in enumerate(linkage.departments):
        labels = linkage.person_labels(d)
        for chunk in range(0, len(dept.ids), 50_000):
            conn.execute(t.links.insert(), [
                {"run_id": run_id, "record_id": rid, "person": p}
                for rid, p in zip(dept.ids[chunk:chunk + 50_000].tolist(), labels[chunk:chunk + 50_000].tolist())])
