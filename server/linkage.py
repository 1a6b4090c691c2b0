"""One linkage run: load the departments' current uploads, compare every pair
of departments, group records into persons, evaluate the rule pack on each
person and store the links, the flags and the report in one transaction.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from datetime import date
from typing import Callable

import numpy as np
from sqlalchemy import select

from fedlink.rules import NeedFlag, apply_households, evaluate, household_labels, load_rulepack
from fedlink.schema import DEPARTMENTS, Project
from server import store as t
from server.matching import ScoredPairs, group_records, pack_filters
from server.store import Store
from server.threshold import auto_threshold

Progress = Callable[..., None]


@dataclass
class DepartmentRecords:
    department: str
    ids: np.ndarray               # store row ids (int64)
    refs: list[bytes]             # encrypted references: stable across uploads, so flags are tracked by them
    filters: np.ndarray           # packed uint64 (n, words)
    indicators: dict[str, np.ndarray]
    households: np.ndarray | None = None  # per record: the department's household number (-1 none), or None


def household_numbers(tokens: list[bytes | None]) -> np.ndarray | None:
    """Number a department's household tokens 0..k-1 (-1 where a record has none); None if no record has one."""
    if not any(tokens):
        return None
    seen: dict[bytes, int] = {}
    return np.fromiter((seen.setdefault(h, len(seen)) if h else -1 for h in tokens), dtype=np.int64,
                       count=len(tokens))


def load_department(conn, department: str, upload_id: str, project: Project) -> DepartmentRecords:
    rows = conn.execute(select(t.records.c.id, t.records.c.ref, t.records.c.clk, t.records.c.indicators,
                               t.records.c.household).where(
        t.records.c.upload_id == upload_id).order_by(t.records.c.id)).all()
    ids = np.fromiter((r.id for r in rows), dtype=np.int64, count=len(rows))
    filters = pack_filters([r.clk for r in rows], project.schema.filter_bits)
    names = project.departments[department]
    indicators = {n: np.fromiter((r.indicators.get(n, 0) for r in rows), dtype=np.int8, count=len(rows))
                  for n in names}
    return DepartmentRecords(department, ids, [r.ref for r in rows], filters, indicators,
                             household_numbers([r.household for r in rows]))


@dataclass
class Linkage:
    departments: list[DepartmentRecords]
    offsets: np.ndarray                              # start of each department in the global index
    labels: np.ndarray                               # person of each record, global index
    pairs: dict[tuple[int, int], ScoredPairs]
    thresholds: dict[tuple[int, int], float]         # the threshold each department pair was linked at

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


def _count(n: int) -> str:
    for size, unit in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k")):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def link(departments: list[DepartmentRecords], threshold: float, engine, progress: Progress,
         auto: bool = False) -> Linkage:
    """With auto, `threshold` is the floor each pair's threshold is raised from (server/threshold.py)."""
    n = [len(d.ids) for d in departments]
    combos = list(itertools.combinations(range(len(departments)), 2))
    total = sum(n[a] * n[b] for a, b in combos)
    done = 0
    pairs, thresholds = {}, {}
    started, last = time.monotonic(), [0.0]

    def compared(before: int, names: str):
        # The engine reports in units of the all-pairs space (n * m per
        # department pair); the ETA is the rate so far over what is left.
        def report(pair_done: int, pair_total: int) -> None:
            now = time.monotonic()
            if now - last[0] < 0.5 and pair_done < pair_total:
                return  # a watcher needs a few updates a second, not one per chunk
            last[0] = now
            at = before + pair_done
            eta = f", ETA {_duration((now - started) * (total - at) / at)}" if 0 < at < total else ""
            # Counts and ETA first: `fedlink run watch` shows the first 60 characters.
            progress("compare", at, total, f"{_count(at)} of {_count(total)} pairs compared{eta}: {names}")
        return report

    if hasattr(engine, "compare_all"):
        # All pairs in one call: blocked pairs share one pass over the bands
        # (server/engine.py), the links are the same as pair by pair.
        for a, b in combos:
            left, right = departments[a].filters, departments[b].filters
            thresholds[(a, b)] = auto_threshold(left, right, threshold) if auto else threshold
        started = time.monotonic()  # the ETA is the compare's own rate, not the thresholds'
        pairs = engine.compare_all([d.filters for d in departments], thresholds,
                                   progress=compared(0, "all department pairs"))
        progress("compare", total, total, f"{sum(len(p) for p in pairs.values()):,} candidate links")
    for a, b in combos if not pairs else ():
        left, right = departments[a].filters, departments[b].filters
        names = f"{departments[a].department} x {departments[b].department}"
        thresholds[(a, b)] = auto_threshold(left, right, threshold) if auto else threshold
        pairs[(a, b)] = engine.compare(left, right, thresholds[(a, b)], progress=compared(done, names))
        done += n[a] * n[b]
        progress("compare", done, total, f"{names}: {len(pairs[(a, b)].score)} candidate links")
    progress("cluster", 0, sum(n), "grouping records into persons")
    labels = group_records(n, pairs)
    offsets = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
    return Linkage(departments, offsets, labels, pairs, thresholds)


def person_facts(linkage: Linkage, pack=None) -> dict[str, np.ndarray]:
    """Facts per person: 'present:dept' and 'dept.indicator'; with a pack that
    has household indicators, those apply to every member of the household
    the person is linked into (fedlink.rules.apply_households)."""
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
    if pack is not None and pack.household_indicators:
        facts = apply_households(pack, facts, households_of(linkage))
    return facts


# How far below a department pair's threshold an unlinked record still counts
# as possibly the same person, for absence rules. Measured on 100k persons with
# doubled errors (docs/quality.md): school dropout precision / recall 0.932 /
# 0.996 without the second look, 0.985 / 0.994 at 0.05, 0.990 / 0.982 at 0.1
# (a wider margin also spares true absences); a missed child costs more than
# a review.
NEAR_MARGIN = 0.05


def possible_presence(linkage: Linkage, departments: list[str], engine, margin: float = NEAR_MARGIN
                      ) -> dict[str, np.ndarray]:
    """'possible:D' per person, for each department D asked for: the person has
    no record in D, but one of their records scores at least (pair threshold -
    margin) against a record of D whose person could be the same one: the two
    persons share no department (joining them would give no department two
    records). Such a pair is a link that may have been missed.

    A second look at what the grouping left apart, restricted to it: records
    of persons absent from D against D's records of persons absent from the
    other department. A sibling's school record, whose person also has a
    population record, conflicts and does not hide the child's absence."""
    names = [d.department for d in linkage.departments]
    n = linkage.persons
    holds = np.zeros(n, dtype=np.int64)  # bit x: the person has a record in department x
    for x in range(len(names)):
        holds[linkage.person_labels(x)] |= np.int64(1) << x
    out = {}
    for name in departments:
        if name not in names:
            continue
        d = names.index(name)
        possible = np.zeros(n, dtype=bool)
        labels_d = linkage.person_labels(d)
        for x in range(len(names)):
            if x == d:
                continue
            labels_x = linkage.person_labels(x)
            rows_x = np.flatnonzero((holds[labels_x] >> d) & 1 == 0)  # x's records of persons with none in D
            rows_d = np.flatnonzero((holds[labels_d] >> x) & 1 == 0)  # D's records of persons with none in x
            if not len(rows_x) or not len(rows_d):
                continue
            t = linkage.thresholds[(min(x, d), max(x, d))]
            near = engine.compare(linkage.departments[x].filters[rows_x], linkage.departments[d].filters[rows_d],
                                  max(0.0, t - margin))
            person, other = labels_x[rows_x[near.left]], labels_d[rows_d[near.right]]
            possible[person[(holds[person] & holds[other]) == 0]] = True
        out[f"possible:{name}"] = possible
    return out


def households_of(linkage: Linkage) -> np.ndarray:
    """Each person's household (-1 for none): persons whose records share a
    household token in any department are one household."""
    memberships = [(linkage.person_labels(d), dept.households) for d, dept in enumerate(linkage.departments)
                   if dept.households is not None]
    return household_labels(linkage.persons, memberships)


def person_scores(linkage: Linkage, persons: np.ndarray) -> dict[int, list[tuple[int, int, float]]]:
    """The links inside each of the given persons: (department a, department b, Dice score)."""
    wanted = np.zeros(linkage.persons, dtype=bool)
    wanted[persons] = True
    out: dict[int, list[tuple[int, int, float]]] = {}
    for (a, b), p in linkage.pairs.items():
        inside = linkage.linked_pairs(a, b)
        who = linkage.person_labels(a)[p.left[inside]]
        keep = wanted[who]
        for person, score in zip(who[keep].tolist(), p.score[inside][keep].tolist()):
            out.setdefault(person, []).append((a, b, round(score, 4)))
    return out


def _label(term: str, from_household: bool = False) -> str:
    """An indicator by name, in words: 'below subsistence line (civil affairs)'."""
    if term.startswith("absent:"):
        return f"no {term[7:].replace('_', ' ')} record"
    neg = term.startswith("not ")
    dept, _, ind = term.removeprefix("not ").partition(".")
    where = dept.replace("_", " ") + (", from a household member's record" if from_household else "")
    return f"{'not ' if neg else ''}{ind.replace('_', ' ')} ({where})"


def _strength(scores: list[float]) -> str:
    low = min(scores)
    word = "strong" if low >= 0.9 else "good" if low >= 0.8 else "moderate"
    return f"match strength {word} (lowest score of this record's links {low:.2f})"


def explain(flag: NeedFlag, departments: list[str], scores: list[float], household_terms: set[str] = frozenset()
            ) -> str:
    """The caseworker's plain-language reason: what the rule looks for, which
    rule and tier, the indicators that fired by name (and which of them came
    from the household), the departments the person was linked across and how
    strong this record's links are."""
    fired = "; ".join(f"{rule} found " + ", ".join(_label(x, x in household_terms) for x in terms)
                      for rule, terms in flag.reasons)
    across = ", ".join(d.replace("_", " ") for d in departments)
    if len(departments) < 2:
        how = f"Found in {across} only (no link to another department)."
    else:
        how = f"Linked across {len(departments)} departments ({across})" + (f"; {_strength(scores)}." if scores
                                                                             else ".")
    return f"{flag.explanation[0].upper()}{flag.explanation[1:]} (tier {flag.tier}). Rule {fired}. {how}"


def route_flags(linkage: Linkage, flags: list[NeedFlag], facts: dict[str, np.ndarray]) -> list[dict]:
    names = [d.department for d in linkage.departments]
    holders_of = {name: linkage.record_of_person(i) for i, name in enumerate(names)}
    persons = np.array(sorted({f.person for f in flags}), dtype=np.int64)
    scores = person_scores(linkage, persons) if persons.size else {}
    # Household indicators a person holds through another member's record, for the explanation.
    borrowed: dict[int, set[str]] = {}
    for key, v in facts.items():
        if key.startswith("household:"):
            for p in np.flatnonzero(np.asarray(v)[persons] if persons.size else []).tolist():
                borrowed.setdefault(int(persons[p]), set()).add(key.removeprefix("household:"))
    rows = []
    for f in flags:
        holders = [d for d in names if holders_of[d][f.person] >= 0]
        targets = [d for d in f.route if d in holders] or holders
        for d in targets:
            # Only the links that touch this department's own record: what its caseworker needs to judge
            # the match, and nothing about how two other departments' records compare.
            own = names.index(d)
            s = [score for a, b, score in scores.get(f.person, []) if own in (a, b)]
            detail = {
                "reasons": [{"rule": rule, "indicators": list(terms)} for rule, terms in f.reasons],
                "departments_linked": len(holders),
                "match_scores": s,
                "explanation": explain(f, holders, s, borrowed.get(f.person, set())),
            }
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
    # A record the department's current extract no longer holds is not followed into a transition: the
    # department has no record to support, so its open flags resolve (moved away, died, register cleaned).
    held = set(ref_of.values())
    for key, p in previous.items():
        if key in current or p.status == "resolved":
            continue
        gone = key[1] not in held
        if gone:
            status, until = "resolved", None
        elif p.status == "transition":
            status, until = ("transition", p.transition_until) if today < p.transition_until else ("resolved", None)
        elif p.need in pack.transition_needs:
            status, until = "transition", add_months(as_of, months).isoformat()
        else:
            status, until = "resolved", None
        detail = dict(p.detail)
        detail["found"] = p.detail.get("found", p.detail["explanation"])  # why it was first raised, kept once
        detail["explanation"] = (
            "The record is no longer in this department's extract: resolved. " if gone else
            f"No longer found in this run; support continues until {until} (gradual exit). "
            if status == "transition" else "No longer found in this run: resolved. ") + detail["found"]
        out.append({"department": p.department, "record_id": p.record_id, "person": -1, "need": p.need,
                    "tier": p.tier, "status": status, "since": p.since, "transition_until": until, "detail": detail})
    return out


def suppress(counts: dict[str, int], k: int) -> list[dict]:
    """Report cells; a count of 1..k-1 people is withheld (privacy model, point 6)."""
    return [{"key": key, "count": 0 if 0 < c < k else int(c), "suppressed": bool(0 < c < k)}
            for key, c in counts.items()]


def build_report(linkage: Linkage, flag_rows: list[dict], k: int, facts: dict | None = None) -> dict:
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
        "threshold_per_department_pair": {f"{names[a]}~{names[b]}": t for (a, b), t in linkage.thresholds.items()},
        "persons_by_department_count": suppress(by_count, k),
        "flags_per_need": suppress(per_need, k),
        "flags_per_status": suppress(statuses, k),
        # Per department: persons with no record there but near one nobody's linked to,
        # whom absence rules do not count as absent (possible_presence).
        "absence_uncertain": suppress({key.removeprefix("possible:"): int(np.count_nonzero(v))
                                       for key, v in (facts or {}).items() if key.startswith("possible:")}, k),
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
    linkage = link(departments, project.schema.threshold, engine, progress, auto=project.schema.auto_threshold)
    pack = load_rulepack(project.rules_toml, source=f"project {project.project_id} rules")
    progress("rules", 0, linkage.persons, "evaluating the rule pack")
    facts = person_facts(linkage, pack)
    facts.update(possible_presence(linkage, pack.absence_departments, engine))
    found = evaluate(pack, facts, linkage.persons)
    flag_rows = route_flags(linkage, found, facts)
    progress("rules", linkage.persons, linkage.persons, f"{len(found)} needs found")
    ref_of = {int(i): ref for d in departments for i, ref in zip(d.ids.tolist(), d.refs)}
    progress("store", 0, len(flag_rows), "storing links and flags")
    with store.write() as conn:
        flag_rows = track_over_time(conn, project.project_id, run_id, as_of, flag_rows, ref_of, pack)
        report = build_report(linkage, flag_rows, pack.suppression_k, facts)
        # Chunk by chunk: at 1M persons (3.3M records) the rows as one list of
        # dicts would hold ~1 GB at once.
        for d, dept in enumerate(linkage.departments):
            labels = linkage.person_labels(d)
            for chunk in range(0, len(dept.ids), 50_000):
                conn.execute(t.links.insert(), [
                    {"run_id": run_id, "record_id": rid, "person": p}
                    for rid, p in zip(dept.ids[chunk:chunk + 50_000].tolist(),
                                      labels[chunk:chunk + 50_000].tolist())])
        if flag_rows:
            conn.execute(t.flags.insert(), [{"run_id": run_id, **r} for r in flag_rows])
    progress("store", len(flag_rows), len(flag_rows), "stored")
    return report
