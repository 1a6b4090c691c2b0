"""One linkage run: load the departments' current uploads, compare every pair
of departments, group records into persons, evaluate the rule pack on each
person and store the links, the flags and the report in one transaction.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date
from typing import Callable

import numpy as np
from sqlalchemy import select

from fedlink.rules import NeedFlag, evaluate, load_rulepack
from fedlink.schema import DEPARTMENTS, Project
from server import store as t
from server.matching import ScoredPairs, group_records, pack_filters
from server.store import Store

Progress = Callable[..., None]


@dataclass
class DepartmentRecords:
    department: str
    ids: np.ndarray               # store row ids (int64)
    refs: list[bytes]             # encrypted references: stable across uploads, so flags are tracked by them
    filters: np.ndarray           # packed uint64 (n, words)
    indicators: dict[str, np.ndarray]


def load_department(conn, department: str, upload_id: str, project: Project) -> DepartmentRecords:
    rows = conn.execute(select(t.records.c.id, t.records.c.ref, t.records.c.clk, t.records.c.indicators).where(
        t.records.c.upload_id == upload_id).order_by(t.records.c.id)).all()
    ids = np.fromiter((r.id for r in rows), dtype=np.int64, count=len(rows))
    filters = pack_filters([r.clk for r in rows], project.schema.filter_bits)
    names = project.departments[department]
    indicators = {n: np.fromiter((r.indicators.get(n, 0) for r in rows), dtype=np.int8, count=len(rows))
                  for n in names}
    return DepartmentRecords(department, ids, [r.ref for r in rows], filters, indicators)


@dataclass
class Linkage:
    departments: list[DepartmentRecords]
    offsets: np.ndarray                              # start of each department in the global index
    labels: np.ndarray                               # person of each record, global index
    pairs: dict[tuple[int, int], ScoredPairs]

    @property
    def persons(self) -> int:
        return int(self.labels.max()) + 1 if self.labels.size else 0

    def person_labels(self, d: int) -> np.ndarray:
        return self.labels[self.offsets[d]:self.offsets[d] + len(self.departments[d].ids)]

    def record_of_person(self, d: int) -> np.ndarray:
        """For department d: the store id of each person's record there, -1 where none."""
        out = np.full(self.persons, -1, dtype=np.int64)
        out[self.person_labels(d)] = self.departments[d].ids
        return out

    def linked_pairs(self, a: int, b: int) -> np.ndarray:
        """Mask over pairs[(a, b)] of the links that ended inside one person."""
        p = self.pairs[(a, b)]
        return self.person_labels(a)[p.left] == self.person_labels(b)[p.right]


def link(departments: list[DepartmentRecords], threshold: float, engine, progress: Progress) -> Linkage:
    n = [len(d.ids) for d in departments]
    combos = list(itertools.combinations(range(len(departments)), 2))
    total = sum(n[a] * n[b] for a, b in combos)
    done = 0
    pairs = {}
    for a, b in combos:
        pairs[(a, b)] = engine.compare(departments[a].filters, departments[b].filters, threshold)
        done += n[a] * n[b]
        progress("compare", done, total, f"{departments[a].department} x {departments[b].department}: "
                                         f"{len(pairs[(a, b)].score)} candidate links")
    progress("cluster", 0, sum(n), "grouping records into persons")
    labels = group_records(n, pairs)
    offsets = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
    return Linkage(departments, offsets, labels, pairs)


def person_facts(linkage: Linkage) -> dict[str, np.ndarray]:
    facts = {}
    for d, dept in enumerate(linkage.departments):
        labels = linkage.person_labels(d)
        present = np.zeros(linkage.persons, dtype=bool)
        present[labels] = True
        facts[f"present:{dept.department}"] = present
        for name, values in dept.indicators.items():
            v = np.zeros(linkage.persons, dtype=bool)
            v[labels] = values.astype(bool)
            facts[f"{dept.department}.{name}"] = v
    return facts


def person_scores(linkage: Linkage, persons: np.ndarray) -> dict[int, list[float]]:
    """Dice scores of the links inside each of the given persons."""
    wanted = np.zeros(linkage.persons, dtype=bool)
    wanted[persons] = True
    out: dict[int, list[float]] = {}
    for (a, b), p in linkage.pairs.items():
        inside = linkage.linked_pairs(a, b)
        who = linkage.person_labels(a)[p.left[inside]]
        keep = wanted[who]
        for person, score in zip(who[keep].tolist(), p.score[inside][keep].tolist()):
            out.setdefault(person, []).append(round(score, 4))
    return out


def _label(term: str) -> str:
    if term.startswith("absent:"):
        return f"no {term[7:].replace('_', ' ')} record"
    neg = term.startswith("not ")
    dept, _, ind = term.removeprefix("not ").partition(".")
    return f"{'not ' if neg else ''}{ind.replace('_', ' ')} ({dept.replace('_', ' ')})"


def explain(flag: NeedFlag, linked: int, scores: list[float]) -> str:
    fired = "; ".join(", ".join(_label(x) for x in terms) for _, terms in flag.reasons)
    how = (f"linked across {linked} departments, lowest match score {min(scores):.2f}" if scores
           else "found in one department only")
    return f"{flag.explanation[0].upper()}{flag.explanation[1:]}: {fired}. The person was {how}."


def route_flags(linkage: Linkage, flags: list[NeedFlag], facts: dict[str, np.ndarray]) -> list[dict]:
    names = [d.department for d in linkage.departments]
    holders_of = {name: linkage.record_of_person(i) for i, name in enumerate(names)}
    persons = np.array(sorted({f.person for f in flags}), dtype=np.int64)
    scores = person_scores(linkage, persons) if persons.size else {}
    rows = []
    for f in flags:
        holders = [d for d in names if holders_of[d][f.person] >= 0]
        targets = [d for d in f.route if d in holders] or holders
        s = scores.get(f.person, [])
        detail = {
            "reasons": [{"rule": rule, "indicators": list(terms)} for rule, terms in f.reasons],
            "departments_linked": len(holders),
            "match_scores": s,
            "explanation": explain(f, len(holders), s),
        }
        for d in targets:
            rows.append({"department": d, "record_id": int(holders_of[d][f.person]), "person": f.person,
                         "need": f.need, "tier": f.tier, "detail": detail})
    return rows


def add_months(day: date, months: int) -> date:
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    last = [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31, 30, 31, 31, 30, 31,
            30, 31][month - 1]
    return date(year, month, min(day.day, last))


def track_over_time(conn, project_id: str, run_id: str, as_of: date, rows: list[dict], ref_of: dict[int, bytes],
                    pack) -> list[dict]:
    """Compare this run's flags with the previous run's, by (department,
    reference, need): new or continuing; a need that ended enters a gradual-exit
    transition (for the pack's transition needs) and is then resolved. Flags a
    caseworker reviewed as "not in need" are not raised again until their
    suppression ends."""
    today = as_of.isoformat()
    prev_run = conn.execute(select(t.runs.c.run_id).where(
        (t.runs.c.project_id == project_id) & (t.runs.c.state == "done") & (t.runs.c.run_id != run_id))
        .order_by(t.runs.c.created_at.desc()).limit(1)).scalar()
    previous = {}
    if prev_run:
        for f in conn.execute(select(t.flags, t.records.c.ref).join(t.records, t.records.c.id == t.flags.c.record_id)
                              .where(t.flags.c.run_id == prev_run)):
            previous[(f.department, f.ref, f.need)] = f
    suppressed = {(o.department, o.ref, o.need) for o in conn.execute(select(t.outcomes).where(
        (t.outcomes.c.project_id == project_id) & (t.outcomes.c.outcome == "not_in_need")
        & (t.outcomes.c.suppressed_until > today)))}
    months = int(pack.param("transition_months"))
    out, current = [], set()
    for r in rows:
        key = (r["department"], ref_of[r["record_id"]], r["need"])
        current.add(key)  # a suppressed flag still holds: it is withheld, not resolved
        if key in suppressed:
            continue
        p = previous.get(key)
        since = p.since if p is not None and p.status != "resolved" else today
        until = add_months(date.fromisoformat(since), months).isoformat() if r["need"] == "gradual_exit" else None
        out.append({**r, "status": "continuing" if since != today else "new", "since": since,
                    "transition_until": until})
    for key, p in previous.items():
        if key in current or p.status == "resolved":
            continue
        if p.status == "transition":
            status, until = ("transition", p.transition_until) if today < p.transition_until else ("resolved", None)
        elif p.need in pack.transition_needs:
            status, until = "transition", add_months(as_of, months).isoformat()
        else:
            status, until = "resolved", None
        detail = dict(p.detail)
        detail["explanation"] = (f"No longer found in this run; support continues until {until} (gradual exit). "
                                 if status == "transition" else "No longer found in this run: resolved. ") + \
            p.detail["explanation"]
        out.append({"department": p.department, "record_id": p.record_id, "person": -1, "need": p.need,
                    "tier": p.tier, "status": status, "since": p.since, "transition_until": until, "detail": detail})
    return out


def suppress(counts: dict[str, int], k: int) -> list[dict]:
    """Report cells; a count of 1..k-1 people is withheld (privacy model, point 6)."""
    return [{"key": key, "count": 0 if 0 < c < k else int(c), "suppressed": bool(0 < c < k)}
            for key, c in counts.items()]


def build_report(linkage: Linkage, flag_rows: list[dict], k: int) -> dict:
    names = [d.department for d in linkage.departments]
    per_dept = {d.department: len(d.ids) for d in linkage.departments}
    pair_counts = {f"{names[a]}~{names[b]}": int(linkage.linked_pairs(a, b).sum()) for a, b in linkage.pairs}
    size = np.bincount(linkage.labels, minlength=linkage.persons) if linkage.persons else np.array([], int)
    by_count = {f"{c} departments": int((size == c).sum()) for c in range(1, len(names) + 1)}
    need_persons: dict[str, set] = {}
    statuses: dict[str, int] = {}
    for r in flag_rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        if r["person"] >= 0:
            need_persons.setdefault(r["need"], set()).add(r["person"])
    per_need = {need: len(p) for need, p in sorted(need_persons.items())}
    return {
        "persons": linkage.persons,
        "suppression_k": k,
        "records_per_department": suppress(per_dept, k),
        "linked_pairs_per_department_pair": suppress(pair_counts, k),
        "persons_by_department_count": suppress(by_count, k),
        "flags_per_need": suppress(per_need, k),
        "flags_per_status": suppress(statuses, k),
    }


def execute_run(store: Store, project: Project, run_id: str, as_of: date, used: dict[str, str], engine,
                progress: Progress) -> dict:
    order = [d for d in DEPARTMENTS if d in used]
    progress("load", 0, len(order), "loading encoded records")
    with store.read() as conn:
        departments = []
        for i, d in enumerate(order):
            departments.append(load_department(conn, d, used[d], project))
            progress("load", i + 1, len(order), f"{d}: {len(departments[-1].ids)} records")
    linkage = link(departments, project.schema.threshold, engine, progress)
    pack = load_rulepack(project.rules_toml, source=f"project {project.project_id} rules")
    progress("rules", 0, linkage.persons, "evaluating the rule pack")
    facts = person_facts(linkage)
    found = evaluate(pack, facts, linkage.persons)
    flag_rows = route_flags(linkage, found, facts)
    progress("rules", linkage.persons, linkage.persons, f"{len(found)} needs found")
    ref_of = {int(i): ref for d in departments for i, ref in zip(d.ids.tolist(), d.refs)}
    progress("store", 0, len(flag_rows), "storing links and flags")
    with store.write() as conn:
        flag_rows = track_over_time(conn, project.project_id, run_id, as_of, flag_rows, ref_of, pack)
        report = build_report(linkage, flag_rows, pack.suppression_k)
        link_rows = [{"run_id": run_id, "record_id": int(rid), "person": int(p)}
                     for d, dept in enumerate(linkage.departments)
                     for rid, p in zip(dept.ids.tolist(), linkage.person_labels(d).tolist())]
        for chunk in range(0, len(link_rows), 50_000):
            conn.execute(t.links.insert(), link_rows[chunk:chunk + 50_000])
        if flag_rows:
            conn.execute(t.flags.insert(), [{"run_id": run_id, **r} for r in flag_rows])
    progress("store", len(flag_rows), len(flag_rows), "stored")
    return report
