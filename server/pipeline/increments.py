"""Monthly runs that redo only what changed (issue 18).

A run keeps, per department pair, every scored pair at or above its class's
level (a little under the class's threshold, server/pipeline/link.py, and
never under the project's floor): the pairs with both IDs on the whole
filter from ``level``, those with a blank ID on the rest of the filter from
``blank_level`` (server/pipeline/presence.py), with how the pair was
compared, exactly or LSH-blocked (``link_carries``). Kept at the floor, they
were a tenth of all pairs of balanced filters (158 million at 100,000
persons, 10 GB while stored). Each class is kept or compared anew on its own:
a record unchanged since the previous run has the same ID segment, so its
pairs with other unchanged records stay in their class.
The next run matches each department's records to the previous run's by
their stable reference: a record is unchanged when its filter is the same
bytes. Its pairs with other unchanged records keep their scores (a Dice
score depends on the two filters only); only the pairs with a new or changed
record are scored, against the whole other side. The thresholds are chosen
from the sampled profile exactly as a full run chooses them
(server/pipeline/link.py), and the links at them are cut from the merged
pairs at the level, so the links, the persons and the flags are a full
run's. A pair whose previous level is above this run's (its threshold fell by
more than the margin) is compared in full, the class whose level it is.

Blocked pairs: a full run's blocked pair is the exact result restricted to
the LSH candidates, and two records are candidates when their keys agree in
some band whose bucket holds at most ``max_bucket`` records of each side.
The new pairs come from the same multi-party pass as a full run's, over all
the records' buckets, emitting only the candidates with a new or changed
record (``Engine.compare_all`` with ``changed``): every record's key in every
band is still computed, but only the buckets holding a changed record are
sorted and scanned, each whole (``server.blocking.multi._pack_hits``), and
the candidates scored are about the changed share of a full run's. The kept pairs were cut
by the previous run's buckets, so the bucket rule must be inert in both
runs: a run keeps a bound on its largest bucket (measured by a full pass,
after an incremental one the previous bound plus the growth below), and the
next keeps a department pair only when that plus the
most new or changed records of one department under one key in one band (a
bucket grows by at most the records that came into it) stays within
``max_bucket``. A pair whose blocking changed (the sizes crossed the
engine's exact limit, another engine) or that has no previous pairs is
compared in full. An exact pair scores its changed rows against the other
side, (c x m) + (n x c') pairs. The blank class is blocked on the rests' keys:
its bound and growth are measured there too, and the larger growth counts.
"""
from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import and_, select

from server import store as t
from server.blocking.keys import band_positions, bit_planes, sampled_keys
from server.blocking.params import BlockingStats, LshParams
from server.blocking.scoring import at_threshold
from server.matching import ScoredPairs, popcounts
from server.pipeline.presence import blank_ids, compare_by_class, merged, rest_and_id_counts
from server.pipeline.profiles import PairProfile, SideProfile, to_rows

_BANDS_PER_CHUNK = 100  # bands whose keys of the changed records are sorted at once


@dataclass(frozen=True)
class PairCarry:
    """One department pair's scored pairs at its level, by record id, as a run left them."""

    blocking: str
    left_ids: np.ndarray
    right_ids: np.ndarray
    score: np.ndarray
    profile: PairProfile | None = None  # the sampled score profile (server/pipeline/profiles.py)
    level: float = 0.0                  # every pair with both IDs scoring at least this is here
    blank_level: float | None = None    # ... and every pair with a blank ID at least this on the rest
    #                                     (None: kept before 0010, its blank class is compared anew)


@dataclass
class Previous:
    """The newest finished run's pairs, and which of this run's records are unchanged since it."""

    run_id: str
    floor: float
    bucket_bound: int
    pairs: dict[tuple[str, str], PairCarry]
    # Per department: this run's row indices of the unchanged records and the ids they had in that run.
    unchanged: dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass
class Carried:
    """What a run leaves the next: each department pair's pairs at its level (indices into its
    departments); ``floor`` is the project's threshold its profiles were taken from."""

    floor: float
    levels: dict[tuple[int, int], float]
    bucket_bound: int
    blocking: dict[tuple[int, int], str]
    pairs: dict[tuple[int, int], ScoredPairs]   # both classes, each scored as it is (presence.py)
    summary: dict = field(default_factory=dict)  # for the run's report
    profiles: dict[tuple[int, int], PairProfile] = field(default_factory=dict)  # set by link()
    blank_levels: dict[tuple[int, int], float] = field(default_factory=dict)  # the blank class's (presence.py)


def blocking_name(params: LshParams | None) -> str:
    if params is None:
        return "exact"
    return f"lsh:{params.bands}:{params.rows}:{params.seed}:{params.max_bucket}"


# -- the store ------------------------------------------------------------------------------------


def load_previous(conn, project_id: str, run_id: str, departments, used: dict[str, str]) -> Previous | None:
    """The newest done run of the project that left pairs, with this run's records matched to its."""
    row = conn.execute(
        select(t.runs.c.run_id, t.runs.c.uploads)
        .where(t.runs.c.project_id == project_id, t.runs.c.state == "done", t.runs.c.run_id != run_id,
               t.runs.c.run_id.in_(select(t.link_carries.c.run_id)))
        .order_by(t.runs.c.number.desc()).limit(1)).first()
    if row is None:
        return None
    pairs, floor, bound = {}, None, 0
    for c in conn.execute(select(t.link_carries).where(t.link_carries.c.run_id == row.run_id)).all():
        raw = zlib.decompress(c.data)
        ids = np.frombuffer(raw, np.int64, count=2 * c.pairs)
        score = np.frombuffer(raw, np.float32, offset=16 * c.pairs, count=c.pairs)
        profile = None
        if len(raw) > 20 * c.pairs:  # the pair's profile follows its pairs: left side, then right
            left, at = SideProfile.unpack(raw, 20 * c.pairs)
            profile = (left, SideProfile.unpack(raw, at)[0])
        pairs[(c.left_department, c.right_department)] = PairCarry(
            c.blocking, ids[:c.pairs], ids[c.pairs:], score, profile, c.floor if c.level is None else c.level,
            c.blank_level)
        floor, bound = c.floor, max(bound, c.bucket_bound)
    before = row.uploads or {}
    unchanged = {d.department: _unchanged(conn, d, before.get(d.department), used[d.department])
                 for d in departments}
    return Previous(row.run_id, floor, bound, pairs, unchanged)


def _unchanged(conn, dept, previous_upload: str | None, upload: str) -> tuple[np.ndarray, np.ndarray]:
    """This run's rows whose reference and filter are in the previous run's upload, and their ids there."""
    if previous_upload is None:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if previous_upload == upload:
        return np.arange(len(dept.ids), dtype=np.int64), dept.ids
    cur, prev = t.records.alias("cur"), t.records.alias("prev")
    rows = conn.execute(
        select(cur.c.id, prev.c.id.label("previous"))
        .select_from(cur.join(prev, and_(prev.c.upload_id == previous_upload, prev.c.ref == cur.c.ref)))
        .where(cur.c.upload_id == upload, prev.c.clk == cur.c.clk)).all()
    current = np.fromiter((r.id for r in rows), np.int64, count=len(rows))
    earlier = np.fromiter((r.previous for r in rows), np.int64, count=len(rows))
    order = np.argsort(current)
    return np.searchsorted(dept.ids, current[order]), earlier[order]


def pair_carries(departments, carried: Carried) -> dict[tuple[str, str], PairCarry]:
    """A run's pairs at their levels by record id: what the next run reads back (``load_previous``)."""
    return {(departments[a].department, departments[b].department):
            PairCarry(carried.blocking[(a, b)], departments[a].ids[p.left].astype(np.int64),
                      departments[b].ids[p.right].astype(np.int64), p.score.astype(np.float32),
                      carried.profiles.get((a, b)), carried.levels[(a, b)], carried.blank_levels.get((a, b)))
            for (a, b), p in carried.pairs.items()}


def store_carried(conn, project_id: str, run_id: str, departments, carried: Carried) -> None:
    """This run's pairs for the next; the project's older ones go (a run reads only the newest)."""
    runs = select(t.runs.c.run_id).where(t.runs.c.project_id == project_id)
    conn.execute(t.link_carries.delete().where(t.link_carries.c.run_id.in_(runs)))
    rows = [{"run_id": run_id, "left_department": left, "right_department": right, "blocking": p.blocking,
             "floor": carried.floor, "level": p.level, "blank_level": p.blank_level,
             "bucket_bound": carried.bucket_bound, "pairs": len(p.score),
             "data": zlib.compress(p.left_ids.tobytes() + p.right_ids.tobytes() + p.score.tobytes()
                                   + (b"".join(side.pack() for side in p.profile) if p.profile else b""), 1)}
            for (left, right), p in pair_carries(departments, carried).items()]
    if rows:
        conn.execute(t.link_carries.insert(), rows)


# -- the comparison -------------------------------------------------------------------------------


def compare_at_levels(departments, floor: float, levels: dict[tuple[int, int], float], engine,
                      previous: Previous | None, progress=None, *, words: int = 0,
                      blank_levels: dict[tuple[int, int], float] | None = None, rests=None) -> Carried:
    """Every department pair's scored pairs at its levels (``levels``, and for the blank-ID class
    ``blank_levels`` on the ``rests``: server/pipeline/presence.py; at least the project's ``floor``):
    each class kept from ``previous`` where it can be, the rest compared in full in one pass per
    class (``presence.compare_by_class``)."""
    filters = [d.filters for d in departments]
    blank_levels = blank_levels if words else {}
    combos = list(itertools.combinations(range(len(departments)), 2))
    params = {(a, b): engine.params_for(len(filters[a]), len(filters[b])) for a, b in combos}
    changed = _changed_rows(departments, previous)
    growth = {p: max([_largest_bucket(filters, changed, p)] + ([_largest_bucket(rests, changed, p)] if words else []))
              for p in set(params.values()) if p is not None}
    reuse = _reusable(departments, combos, params, levels, previous, growth)
    reuse_blank = {pair: carry for pair, carry in _reusable(departments, combos, params, blank_levels, previous, growth,
                                                            blank=True).items() if pair in blank_levels}
    sizes = {(a, b): len(filters[a]) * len(filters[b]) for a, b in combos}
    total = sum(sizes.values())
    stats = BlockingStats()
    ids, blanks = compare_by_class(filters, rests, {p: levels[p] for p in combos if p not in reuse},
                                   {p: v for p, v in blank_levels.items() if p not in reuse_blank}, words, engine,
                                   stats=stats, progress=_partial(progress, 0, total))
    if reuse or reuse_blank:  # the pairs with a new or changed record, in one pass per class (module doc)
        masks = [np.zeros(len(f), bool) for f in filters]
        for mask, rows in zip(masks, changed):
            mask[rows] = True
        fresh = compare_by_class(filters, rests, {p: levels[p] for p in reuse},
                                 {p: blank_levels[p] for p in reuse_blank}, words, engine, changed=masks, stats=stats)
        for kept, fresh_class, out, class_levels, blank in ((reuse, fresh[0], ids, levels, False),
                                                           (reuse_blank, fresh[1], blanks, blank_levels, True)):
            for (a, b), carry in kept.items():
                out[(a, b)] = _merge(departments[a], departments[b], previous, carry, fresh_class[(a, b)],
                                     class_levels[(a, b)], words, blank)
    if progress is not None:
        progress(total, total)
    pairs = {pair: merged(ids[pair], blanks[pair]) if pair in blanks else ids[pair] for pair in combos}
    # The full pass measures its largest bucket; the kept pairs' pass skips the buckets without a changed
    # record, so there the bound is the previous one plus what a bucket can have grown by.
    bound = max([stats.largest_bucket] + [previous.bucket_bound + growth[params[pair]]
                                          for pair in set(reuse) | set(reuse_blank) if params[pair] is not None])
    summary = {"from_run": previous.run_id if previous else None, "department_pairs_kept": len(reuse),
               "blank_classes_kept": len(reuse_blank), "department_pairs": len(combos),
               "records": sum(len(d.ids) for d in departments),
               "records_new_or_changed": int(sum(len(c) for c in changed)),
               "pairs_kept_for_next_run": int(sum(len(p) for p in pairs.values()))}
    return Carried(floor, dict(levels), int(bound), {pair: blocking_name(params[pair]) for pair in combos},
                   pairs, summary, blank_levels=dict(blank_levels))


def _partial(progress, base: int, total: int):
    return None if progress is None else (lambda d, _t: progress(base + d, total) if d < _t else None)


def _changed_rows(departments, previous: Previous | None) -> list[np.ndarray]:
    out = []
    for d in departments:
        keep = np.zeros(len(d.ids), bool)
        if previous is not None:
            keep[previous.unchanged[d.department][0]] = True
        out.append(np.flatnonzero(~keep))
    return out


def _largest_bucket(filters: list[np.ndarray], changed: list[np.ndarray], params: LshParams) -> int:
    """The most new or changed records of one department under one key in one band of ``filters``
    (the whole filters', or the rests' keys of the blank class): what any bucket can have grown by
    since the previous run."""
    positions = band_positions(filters[0].shape[1] * 64, params.bands, params.rows, params.seed)
    most = 0
    for f, rows in zip(filters, changed):
        if len(rows) <= 1:
            most = max(most, len(rows))
            continue
        filters = np.ascontiguousarray(f[rows])
        planes = bit_planes(filters)
        for b0 in range(0, len(positions), _BANDS_PER_CHUNK):
            keys = np.sort(sampled_keys(filters, positions[b0:b0 + _BANDS_PER_CHUNK], planes=planes), axis=1)
            # Runs of equal keys in a sorted row: where a run starts, per band.
            starts = np.ones(keys.shape, bool)
            starts[:, 1:] = keys[:, 1:] != keys[:, :-1]
            at = np.flatnonzero(np.concatenate([starts.ravel(), [True]]))
            runs = np.diff(at)
            # A run never spans two bands: each band's first key starts one.
            most = max(most, int(runs.max()))
    return most


def _reusable(departments, combos, params, levels, previous, growth, blank: bool = False
              ) -> dict[tuple[int, int], PairCarry]:
    """The department pairs whose previous pairs of one class (the blank-ID one with ``blank``) a full
    run's would contain (module doc): kept at this run's level of that class or under it."""
    if previous is None:
        return {}
    out = {}
    for a, b in combos:
        carry = previous.pairs.get((departments[a].department, departments[b].department))
        p = params[(a, b)]
        if carry is None or carry.blocking != blocking_name(p) or (a, b) not in levels:
            continue
        level = carry.blank_level if blank else carry.level
        if level is None or level > levels[(a, b)]:
            continue
        if p is not None and previous.bucket_bound + growth[p] > p.max_bucket:
            continue  # a bucket may have been, or may now be, skipped: the candidates could differ
        out[(a, b)] = carry
    return out


def _merge(left, right, previous: Previous, carry: PairCarry, fresh: ScoredPairs, level: float, words: int,
           blank: bool) -> ScoredPairs:
    """One department pair's class (the blank-ID one with ``blank``): the previous pairs of unchanged
    records in that class at this run's level and the fresh pairs of the others, by (left, right). An
    unchanged record has the same filter, so the same ID segment: its pairs stay in their class."""
    li, rj = to_rows(carry.left_ids, previous.unchanged[left.department]), \
        to_rows(carry.right_ids, previous.unchanged[right.department])
    kept = (li >= 0) & (rj >= 0)
    if words:
        rows = np.flatnonzero(kept)
        in_blank = blank_ids(left.filters, words)[li[rows]] | blank_ids(right.filters, words)[rj[rows]]
        kept[rows[in_blank != blank]] = False
    if (carry.blank_level if blank else carry.level) < level:
        # Kept under a lower level: only what this run's level admits, as the kernel decides.
        rows = np.flatnonzero(kept)
        at = np.arange(len(rows))  # positions among the kept rows, with their counts in that order
        if blank:
            counts = rest_and_id_counts(left.filters, words)[0], rest_and_id_counts(right.filters, words)[0]
            bits = (left.filters.shape[1] - words) * 64
        else:
            counts, bits = (popcounts(left.filters), popcounts(right.filters)), left.filters.shape[1] * 64
        held = at_threshold(ScoredPairs(at, at, carry.score[rows]), level, counts[0][li[rows]], counts[1][rj[rows]],
                            bits)
        kept[:] = False
        kept[rows[held.left]] = True
    return merged(ScoredPairs(li[kept], rj[kept], carry.score[kept]), fresh)
