"""The run's report: counts only, each one of 1..k-1 people withheld, and
enough others withheld with them that none can be worked out again.

Withholding a small cell is not enough when the others and a total are
shown: `persons` minus the other cells gives it back. The report's tables
are tied by sums a reader knows (`Relation`s: persons per department count
add up to `persons`; weighted by the count, to the records; flags per need
add up to the new and continuing flags), so after the small cells are
withheld, an audit solves, for each of them, the smallest and largest whole
value the shown cells and the sums leave it (an integer program, what a
reader with a solver would do), and withholds one more cell beside it until
every small cell could be anything from 1 to k-1 (complementary suppression,
as statistical offices do it). Every table's own total is taken as known too.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy.optimize import LinearConstraint, milp

from server.pipeline.link import Linkage

Cell = tuple[str, str]  # (table, key)
TOTAL = "\x00total"     # a table's total: never published, but taken as known (from elsewhere, an older report)


@dataclass(frozen=True)
class Relation:
    """sum(coefficient * cell) == 0 over published cells: what a reader can subtract."""
    terms: dict[Cell, int]


def protect(tables: dict[str, dict[str, int]], relations: list[Relation], k: int) -> set[Cell]:
    """The cells to withhold: every count of 1..k-1, and the fewest others,
    smallest first, in a table or sum with a cell the audit finds exposed."""
    value = {(t, key): c for t, cells in tables.items() for key, c in cells.items()}
    primary = {cell for cell, c in value.items() if 0 < c < k}
    hidden = set(primary)
    while True:
        exposed = [cell for cell in sorted(primary) if not _protected(cell, hidden, value, relations, k)]
        if not exposed:
            return hidden
        complement = _complement(exposed[0], hidden, value, relations)
        if complement is None:  # nothing left to withhold beside it: the whole table goes
            hidden |= {c for c in value if c[0] == exposed[0][0] and value[c] > 0 and not c[1].startswith(TOTAL)}
            primary -= {c for c in primary if c[0] == exposed[0][0]}
            continue
        hidden.add(complement)


def _complement(cell: Cell, hidden: set[Cell], value: dict[Cell, int], relations: list[Relation]) -> Cell | None:
    """The smallest shown non-zero cell of the same table, else of a sum the cell is in."""
    def shown(c: Cell) -> bool:
        return c not in hidden and value[c] > 0 and not c[1].startswith(TOTAL)

    same = [c for c in value if c[0] == cell[0] and shown(c)]
    tied = [c for r in relations if cell in r.terms for c in r.terms if shown(c)]
    for pool in (same, tied):
        if pool:
            return min(pool, key=lambda c: (value[c], c))
    return None


def _protected(cell: Cell, hidden: set[Cell], value: dict[Cell, int], relations: list[Relation], k: int) -> bool:
    """Whether every whole value 1..k-1 stays possible for `cell`, given the
    shown cells and the sums (each withheld cell being at least 1)."""
    unknown = sorted(hidden)
    index = {c: i for i, c in enumerate(unknown)}
    rows, bounds = [], []
    for r in relations:
        if not any(c in index for c in r.terms):
            continue
        row = np.zeros(len(unknown))
        known = 0
        for c, a in r.terms.items():
            if c in index:
                row[index[c]] += a
            else:
                known += a * value[c]
        rows.append(row)
        bounds.append(-known)
    if not rows:
        return True  # no sum ties it to anything shown
    constraint = LinearConstraint(np.array(rows), bounds, bounds)
    goal = np.zeros(len(unknown))
    goal[index[cell]] = 1.0
    ends = []
    for sign in (1.0, -1.0):
        res = milp(sign * goal, constraints=[constraint], integrality=np.ones(len(unknown)),
                   bounds=(1, np.inf))
        if res.status == 3:  # unbounded above: as wide as it gets
            ends.append(np.inf)
            continue
        ends.append(sign * res.fun if res.success else value[cell])
    low, high = ends[0], ends[1]
    return low <= 1 and high >= k - 1


HISTOGRAM_BIN = 0.02


def score_histograms(linkage: Linkage, k: int) -> dict[str, dict]:
    """Per department pair: the sampled best scores in bins from the histogram's floor, suppressed below k."""
    names = [d.department for d in linkage.departments]
    floor, out = linkage.histogram_floor, {}
    edges = np.round(np.arange(floor, 1.0, HISTOGRAM_BIN), 4)
    for (a, b), best in (linkage.best_scores or {}).items():
        seen = best[best >= floor]
        index = np.minimum(((seen - floor) / HISTOGRAM_BIN + 1e-9).astype(np.int64), len(edges) - 1)
        counts = np.bincount(index, minlength=len(edges))
        out[f"{names[a]}~{names[b]}"] = {
            "floor": floor, "bin_width": HISTOGRAM_BIN,
            "bins": suppress({f"{e:.2f}": int(c) for e, c in zip(edges, counts)}, k),
            "below_floor": suppress({"below": int(best.size - seen.size)}, k)[0]}
    return out


def build_report(linkage: Linkage, flag_rows: list[dict], k: int, facts: dict | None = None) -> dict:
    names = [d.department for d in linkage.departments]
    per_dept = {d.department: len(d.ids) for d in linkage.departments}
    pair_counts = {f"{names[a]}~{names[b]}": int(linkage.linked_pairs(a, b).sum()) for a, b in linkage.pairs}
    size = np.bincount(linkage.labels, minlength=linkage.persons) if linkage.persons else np.array([], int)
    by_count = {f"{c} departments": int((size == c).sum()) for c in range(1, len(names) + 1)}
    need_persons: dict[str, dict[int, int]] = {}  # need -> person -> the most urgent tier they were flagged at
    statuses: dict[str, int] = {}
    for r in flag_rows:
        if r["status"] == "held":
            continue  # not a flag until its record persists; counted in the probe signals
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        if r["person"] >= 0:
            tiers = need_persons.setdefault(r["need"], {})
            tiers[r["person"]] = min(tiers.get(r["person"], r["tier"]), r["tier"])
    per_need = {need: len(p) for need, p in sorted(need_persons.items())}
    # Each person once per need, at one tier: a need's tiers add up to the need's cell.
    per_tier = {f"{need}/{tier}": n for need, p in sorted(need_persons.items())
                for tier, n in sorted(Counter(p.values()).items())}
    tables = {
        "persons": {"persons": linkage.persons},
        "records_per_department": per_dept,
        "linked_pairs_per_department_pair": pair_counts,
        "persons_by_department_count": by_count,
        "flags_per_need": per_need,
        "flags_per_status": statuses,
        "flags_per_need_tier": per_tier,
        # Per department: persons with no record there but near one nobody's linked to,
        # whom absence rules do not count as absent (possible_presence).
        "absence_uncertain": {key.removeprefix("possible:"): int(np.count_nonzero(v))
                              for key, v in (facts or {}).items() if key.startswith("possible:")},
    }
    relations = [
        Relation({("persons", "persons"): 1, **{("persons_by_department_count", c): -1 for c in by_count}}),
        Relation({**{("records_per_department", d): 1 for d in per_dept},
                  **{("persons_by_department_count", f"{c} departments"): -c for c in range(1, len(names) + 1)}}),
        # One flag row per person and need (one recipient), new or continuing: both tables add up alike.
        Relation({**{("flags_per_need", n): 1 for n in per_need},
                  **{("flags_per_status", s): -1 for s in ("new", "continuing") if s in statuses}}),
        *(Relation({("flags_per_need", need): 1, **{("flags_per_need_tier", key): -1 for key in per_tier
                                                     if key.rpartition("/")[0] == need}}) for need in per_need),
    ]
    for name, counts in tables.items():
        if name != "persons" and counts:
            relations.append(Relation({**{(name, key): 1 for key in counts}, (name, TOTAL): -1}))
            counts[TOTAL] = sum(counts.values())
    hidden = protect(tables, relations, k)
    cells = {name: [{"key": key, "count": 0 if (name, key) in hidden else int(c),
                     "suppressed": (name, key) in hidden} for key, c in counts.items() if key != TOTAL]
             for name, counts in tables.items() if name != "persons"}
    return {
        "persons": 0 if ("persons", "persons") in hidden else linkage.persons,
        "suppression_k": k,
        **cells,
        "threshold_per_department_pair": {f"{names[a]}~{names[b]}": t for (a, b), t in linkage.thresholds.items()},
        # Pairs with a blank resident ID, scored without it (server/pipeline/presence.py); none without an ID segment.
        "blank_id_threshold_per_department_pair": {f"{names[a]}~{names[b]}": t for (a, b), t in
                                                   (linkage.blank_thresholds or {}).items() if linkage.id_words},
        "score_histogram_per_department_pair": score_histograms(linkage, k),
    }


def suppress(counts: dict[str, int], k: int) -> list[dict]:
    """Cells of one table that no sum ties to another: the small ones and
    their complements withheld (`protect`, with the table's total known)."""
    total = Relation({**{("t", key): 1 for key in counts}, ("t", TOTAL): -1})
    hidden = protect({"t": {**counts, TOTAL: sum(counts.values())}}, [total], k)
    return [{"key": key, "count": 0 if ("t", key) in hidden else int(c), "suppressed": ("t", key) in hidden}
            for key, c in counts.items()]
