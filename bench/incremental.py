"""Monthly runs that redo only what changed: one month's link phase in full and incrementally, in one process.

    python -m bench.incremental --persons 100000 --changed 0.05 [--removed 0.01] [--engine local] [--seed 0]

Month one is a synthetic population (``bench.synthetic_filters.population``:
six departments, each holding ~90% of the persons with its own perturbed
filters); its link phase runs once, in full, and leaves its pairs at the
floor (``server.pipeline.increments``). Month two: ``--removed`` of each
department's records are gone, and ``--changed`` of the records it then
holds are new or changed: a fifth are new persons' (a population of their
own, held by the departments as the first), four fifths existing records
whose filter changed (3% of the bits flipped: a corrected field). The link
phase of month two (``server.pipeline.link.link``: thresholds, compare,
grouping) runs in full and then from month one's pairs, on the same
filters and engine; the printout gives both times, their ratio, and
whether the thresholds, pairs and persons are identical (they must be:
the bench exits 1 otherwise, as it does when the sampled profiles differ),
in wall-clock and in CPU seconds (all threads; what to compare on a shared machine),
and each pair's sampled profile for its automatic threshold timed once
more on its own, taken in full and kept from month one. The project's defaults: floor 0.6, automatic
thresholds. Numba's kernels are compiled on a small population first.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

import numpy as np

from bench.synthetic_filters import N_DEPARTMENTS, population, random_bits
from fedlink.schema import DEPARTMENTS, LinkageSchema
from server.engine import engine_from_url
from server.matching import pack_filters
from server.pipeline.increments import Previous, pair_carries
from server.pipeline.link import HISTOGRAM_REACH, DepartmentRecords, link
from server.pipeline.profiles import pair_profile
from server.threshold import sample_rows

FLOOR = LinkageSchema().threshold


def _quiet(*_args) -> None:
    pass


def month_one(persons: int, seed: int) -> list[DepartmentRecords]:
    filters, who = population(persons, seed=seed)
    out, next_id = [], 1
    for name, f, w in zip(DEPARTMENTS[:N_DEPARTMENTS], filters, who):
        out.append(_department(name, np.arange(next_id, next_id + len(w)), w, f))
        next_id += len(w)
    return out


def _department(name: str, ids: np.ndarray, persons: np.ndarray, filters: np.ndarray) -> DepartmentRecords:
    return DepartmentRecords(name, ids.astype(np.int64), [int(p).to_bytes(8, "big") for p in persons],
                             np.ascontiguousarray(filters), {})


def month_two(before: list[DepartmentRecords], persons: int, changed: float, removed: float, seed: int):
    """The next month's departments (a new upload each: new record ids) and, per department, its
    unchanged rows with their ids in month one."""
    rng = np.random.default_rng(seed + 1)
    newcomers, newcomer_of = population(max(1, round(persons * changed / 5)), seed=seed + 2)
    next_id = int(max(d.ids.max() for d in before)) + 1
    out, unchanged = [], {}
    for d, new_f, new_w in zip(before, newcomers, newcomer_of):
        stay = np.flatnonzero(rng.random(len(d.ids)) >= removed)
        f = d.filters[stay].copy()
        alter = rng.random(len(stay)) < changed * 4 / 5
        bits = random_bits(rng, int(alter.sum()), 0.03, f.shape[1] * 64)
        f[alter] ^= pack_filters(np.packbits(bits, axis=1), f.shape[1] * 64)
        persons_now = np.concatenate([[int.from_bytes(d.refs[i], "big") for i in stay], new_w + persons])
        filters = np.concatenate([f, new_f])
        ids = np.arange(next_id, next_id + len(filters))
        next_id += len(filters)
        same = np.flatnonzero(~alter)
        unchanged[d.department] = (same, d.ids[stay[same]])
        out.append(_department(d.department, ids, persons_now, filters))
    return out, unchanged


def timed_link(departments, engine, previous=None):
    """The linkage, its wall-clock seconds and the process's CPU seconds (all threads: on a shared
    machine the CPU time is what the work took, the wall clock also how busy the others kept it)."""
    start, cpu = time.perf_counter(), time.process_time()
    linkage = link(departments, FLOOR, engine, _quiet, auto=True, previous=previous)
    return linkage, time.perf_counter() - start, time.process_time() - cpu


def profiles_time(departments, engine, previous) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    samples = [sample_rows(d.refs) for d in departments]
    for a, b in itertools.combinations(range(len(departments)), 2):
        kept = previous.pairs[(departments[a].department, departments[b].department)].profile if previous else None
        pair_profile(departments[a], departments[b], (samples[a], samples[b]),
                     max(0.0, round(FLOOR - HISTOGRAM_REACH, 4)), engine, kept, previous.unchanged if previous else {})
    return time.perf_counter() - start, time.process_time() - cpu


def identical(a, b) -> bool:
    if a.thresholds != b.thresholds or not np.array_equal(a.labels, b.labels):
        return False
    if not all(np.array_equal(getattr(x, c), getattr(y, c)) for k in a.carried.profiles
               for x, y in zip(a.carried.profiles[k], b.carried.profiles[k]) for c in ("ids", "best", "second")):
        return False
    return all(np.array_equal(getattr(a.pairs[k], c), getattr(b.pairs[k], c))
               for k in a.pairs for c in ("left", "right", "score"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--changed", type=float, default=0.05, help="share of month two's records new or changed")
    parser.add_argument("--removed", type=float, default=0.01, help="share of month one's records gone")
    parser.add_argument("--engine", default="local")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    engine = engine_from_url(args.engine)
    warm = month_one(2000, args.seed + 9)  # compile the kernels (exact and blocked) before anything is timed
    for warming in (engine, engine_from_url("local+lsh")):
        link(warm, FLOOR, warming, _quiet, auto=True)

    before = month_one(args.persons, args.seed)
    first, first_s, _ = timed_link(before, engine)
    after, unchanged = month_two(before, args.persons, args.changed, args.removed, args.seed)
    previous = Previous("month-1", FLOOR, first.carried.bucket_bound, pair_carries(before, first.carried), unchanged)
    full, full_s, full_cpu = timed_link(after, engine)
    incremental, incremental_s, incremental_cpu = timed_link(after, engine, previous)
    # Each pair's sampled profile, for its threshold, timed on its own: taken in full, then kept.
    profile_s = [profiles_time(after, engine, None), profiles_time(after, engine, previous)]
    records = sum(len(d.ids) for d in after)
    result = {
        "persons": args.persons, "engine": args.engine, "records": records,
        "records_new_or_changed": incremental.carried.summary["records_new_or_changed"],
        "month_one_link_s": round(first_s, 2), "full_link_s": round(full_s, 2),
        "incremental_link_s": round(incremental_s, 2), "ratio": round(incremental_s / full_s, 3),
        "full_link_cpu_s": round(full_cpu, 2), "incremental_link_cpu_s": round(incremental_cpu, 2),
        "cpu_ratio": round(incremental_cpu / full_cpu, 3),
        "profiles_full_s": round(profile_s[0][0], 2), "profiles_incremental_s": round(profile_s[1][0], 2),
        "profiles_full_cpu_s": round(profile_s[0][1], 2), "profiles_incremental_cpu_s": round(profile_s[1][1], 2),
        "department_pairs_kept": incremental.carried.summary["department_pairs_kept"],
        "identical": identical(full, incremental),
    }
    print(json.dumps(result, indent=2))
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
