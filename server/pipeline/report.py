"""The run's report: counts only, each one withheld below the pack's k."""
from __future__ import annotations

import numpy as np

from server.pipeline.link import Linkage


def suppress(counts: dict[str, int], k: int) -> list[dict]:
    """Report cells; a count of 1..k-1 people is withheld (privacy model, point 6)."""
    return [{"key": key, "count": 0 if 0 < c < k else int(c), "suppressed": bool(0 < c < k)}
            for key, c in counts.items()]


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
        "score_histogram_per_department_pair": score_histograms(linkage, k),
        "persons_by_department_count": suppress(by_count, k),
        "flags_per_need": suppress(per_need, k),
        "flags_per_status": suppress(statuses, k),
        # Per department: persons with no record there but near one nobody's linked to,
        # whom absence rules do not count as absent (possible_presence).
        "absence_uncertain": suppress({key.removeprefix("possible:"): int(np.count_nonzero(v))
                                       for key, v in (facts or {}).items() if key.startswith("possible:")}, k),
    }
