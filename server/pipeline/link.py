"""Load and link: the departments' current uploads, every department pair
compared, the records grouped into persons."""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sqlalchemy import Text, cast, select

from fedlink.schema import LinkageSchema, Project
from server import store as t
from server.engine.base import Engine
from server.matching import ScoredPairs, group_records, pack_filters
from server.pipeline.increments import Carried, Previous, compare_at_levels
from server.pipeline.presence import blank_threshold, cut_by_class, rests_of, sampled_with_id
from server.pipeline.segments import link_segments
from server.pipeline.profiles import pair_profile
from server.threshold import sample_rows, threshold_from_scores

# The score histogram (the console's) reaches this far below the threshold.
HISTOGRAM_REACH = 0.2
# A department pair's pairs are compared and kept this far under what its thresholds need.
CARRY_MARGIN = 0.05

# The run's progress: (phase, done, total, message), streamed to `fedlink run watch`.
PhaseProgress = Callable[[str, int, int, str], None]


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
    r = t.records.c
    # Plain tuples, and the indicators as their JSON text parsed as one document,
    # not a JSON parse and Row attributes per record: 326k records (100k persons)
    # load in 5.8 s instead of 10.5 s (a loaded machine, 2026-12-03).
    rows = conn.execute(select(r.id, r.ref, r.clk, cast(r.indicators, Text), r.household).where(
        r.upload_id == upload_id).order_by(r.id)).all()
    ids, refs, clks, indicators_json, households = (list(c) for c in zip(*rows)) if rows else ([], [], [], [], [])
    parsed = json.loads("[" + ",".join(indicators_json) + "]")
    names = project.departments[department]
    indicators = {n: np.fromiter((i.get(n, 0) for i in parsed), dtype=np.int8, count=len(parsed)) for n in names}
    return DepartmentRecords(department, np.array(ids, dtype=np.int64), refs,
                             pack_filters(clks, project.schema.filter_bits), indicators, household_numbers(households))


@dataclass
class Linkage:
    departments: list[DepartmentRecords]
    offsets: np.ndarray                              # start of each department in the global index
    labels: np.ndarray                               # person of each record, global index
    pairs: dict[tuple[int, int], ScoredPairs]
    thresholds: dict[tuple[int, int], float]         # the threshold each department pair was linked at
    best_scores: dict[tuple[int, int], np.ndarray] = None  # sampled records' best scores (-1 under histogram_floor)
    histogram_floor: float = 0.0
    carried: Carried | None = None                   # the pairs at each pair's level, for the next run (increments.py)
    blank_thresholds: dict[tuple[int, int], float] = None  # each pair's threshold for a blank ID (presence.py)
    id_words: int = 0                                # the filters' ID segment, in words (0: none)
    rests: list[np.ndarray] | None = None            # each department's filters less the segment (presence.py)

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


def link(departments: list[DepartmentRecords], threshold: float, engine: Engine, progress: PhaseProgress,
         auto: bool = False, schema: LinkageSchema | None = None, previous: Previous | None = None) -> Linkage:
    """With auto, `threshold` is the floor each pair's threshold is raised from (server/threshold.py).
    A segmented schema links by segments (server/pipeline/segments.py). With `previous`, the pairs
    of records unchanged since that run keep their scores (server/pipeline/increments.py)."""
    if schema is not None and schema.comparison == "segments":
        return link_by_segments(departments, schema, engine, progress)
    n = [len(d.ids) for d in departments]
    combos = list(itertools.combinations(range(len(departments)), 2))
    total = sum(n[a] * n[b] for a, b in combos)
    # One sampled profile per pair, reaching below the threshold: the automatic
    # threshold reads the part at or above its floor (as if measured from
    # there), the report keeps a histogram of the best scores.
    reach = max(0.0, round(threshold - HISTOGRAM_REACH, 4))
    for d in departments:  # the threshold's sample is chosen by reference
        if len(d.refs) != len(d.ids):
            raise ValueError(f"department {d.department}: {len(d.refs)} references for {len(d.ids)} records")
    samples = [sample_rows(d.refs) for d in departments]
    profiles = {pair: pair_profile(departments[pair[0]], departments[pair[1]], (samples[pair[0]], samples[pair[1]]),
                                   reach, engine,
                                   _kept_profile(departments, pair, threshold, previous),
                                   previous.unchanged if previous else {})
                for pair in combos}
    scores = {pair: [np.concatenate([side.best for side in p]), np.concatenate([side.second for side in p])]
              for pair, p in profiles.items()}
    # The records with a blank ID are scored apart (server/pipeline/presence.py): the pairs with
    # both IDs read their threshold off the sampled records that have one.
    words = schema.id_segment_words() if schema is not None else 0
    has_id = {pair: sampled_with_id([departments[d] for d in pair], [samples[d] for d in pair], profiles[pair], words)
              for pair in combos}
    thresholds = {pair: threshold_from_scores(*(np.where(s >= threshold, s, -1.0)[has_id[pair]]
                                                for s in scores[pair]), threshold) if auto else threshold
                  for pair in combos}
    rests = rests_of(departments, words)
    blank = {(a, b): blank_threshold(departments[a], departments[b], (rests[a], rests[b]), words, threshold,
                                     thresholds[(a, b)], engine) if auto and words else thresholds[(a, b)]
             for a, b in combos}
    started, last = time.monotonic(), [0.0]  # the ETA is the compare's own rate, not the thresholds'

    # The engine reports in units of the all-pairs space (n * m per
    # department pair); the ETA is the rate so far over what is left.
    def compared(at: int, _total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 and at < total:
            return  # a watcher needs a few updates a second, not one per chunk
        last[0] = now
        eta = f", ETA {_duration((now - started) * (total - at) / at)}" if 0 < at < total else ""
        # Counts and ETA first: `fedlink run watch` shows the first 60 characters.
        progress("compare", at, total, f"{_count(at)} of {_count(total)} pairs compared{eta}: all department pairs")

    # Every pair at its levels, each class at its own (presence.compare_by_class: blocked pairs in one
    # pass over the bands per class, server/engine/base.py; or kept from the previous run where
    # unchanged), then cut at each class's threshold as the kernel decides: the links are those of
    # comparing at the thresholds, and the next run can keep them. A level sits CARRY_MARGIN under
    # its class's threshold, so that a next run whose threshold moved down a little can still keep
    # them, and never under the floor.
    levels = {pair: max(threshold, thresholds[pair] - CARRY_MARGIN) for pair in combos}
    blank_levels = {pair: max(threshold, blank[pair] - CARRY_MARGIN) for pair in combos} if words else {}
    carried = compare_at_levels(departments, threshold, levels, engine, previous, progress=compared, words=words,
                                blank_levels=blank_levels, rests=rests)
    carried.profiles = profiles
    pairs = {(a, b): cut_by_class(p, (thresholds[(a, b)], blank[(a, b)]), departments[a].filters,
                                  departments[b].filters, words)
             for (a, b), p in carried.pairs.items()}
    kept = carried.summary["department_pairs_kept"]
    progress("compare", total, total, f"{sum(len(p) for p in pairs.values()):,} candidate links"
             + (f" ({kept} department pairs kept from run {previous.run_id})" if kept else ""))
    progress("cluster", 0, sum(n), "grouping records into persons")
    labels = group_records(n, pairs)
    offsets = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
    return Linkage(departments, offsets, labels, pairs, thresholds,
                   {pair: best for pair, (best, _) in scores.items()}, reach, carried, blank, words, rests)


def _kept_profile(departments, pair: tuple[int, int], floor: float, previous: Previous | None):
    """The previous run's profile of the pair, where it was taken at the same floor."""
    if previous is None or previous.floor != floor:
        return None
    carry = previous.pairs.get((departments[pair[0]].department, departments[pair[1]].department))
    return carry.profile if carry else None


def link_by_segments(departments: list[DepartmentRecords], schema: LinkageSchema, engine: Engine,
                     progress: PhaseProgress) -> Linkage:
    """Every department pair's candidates scored segment by segment with its own fitted weights."""
    n = [len(d.ids) for d in departments]
    combos = list(itertools.combinations(range(len(departments)), 2))
    pairs, thresholds = {}, {}
    for done, (a, b) in enumerate(combos):
        progress("compare", done, len(combos), f"{done} of {len(combos)} department pairs scored by segment")
        pairs[(a, b)], thresholds[(a, b)], _ = link_segments(departments[a].filters, departments[b].filters,
                                                             schema, engine)
    progress("compare", len(combos), len(combos), f"{sum(len(p) for p in pairs.values()):,} candidate links")
    progress("cluster", 0, sum(n), "grouping records into persons")
    labels = group_records(n, pairs)
    offsets = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
    return Linkage(departments, offsets, labels, pairs, thresholds)
