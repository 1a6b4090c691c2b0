"""Each department pair's sampled score profile (server/threshold.py), kept across runs.

The automatic threshold reads the best and second-best scores of sampled
records of each side against the whole other side. The sample is chosen by
encrypted reference (``server.threshold.sample_rows``, once per department), so a record that
was sampled last month is sampled again unless records with smaller hashes
came in. A run keeps, per sampled record, its two scores and the records
that have them (``SideProfile``, stored with the run's pairs by
server/pipeline/increments.py). The next run re-scores a sampled record
against the whole other side only when it is new or changed or one of its
two partners is gone or changed; otherwise its two best among the
unchanged records are the kept ones (those partners are unchanged and no
unchanged record scored higher), and only the other side's new or changed
records are scored against it. The profile is the one a full run computes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_HEADER = np.dtype(np.int64).itemsize


@dataclass(frozen=True)
class SideProfile:
    """One side's sampled records against the other side, by record id (-1: no partner)."""

    ids: np.ndarray         # the sampled records of this side
    best: np.ndarray        # float64, -1 under the profile's floor
    second: np.ndarray
    best_ids: np.ndarray    # the other side's records that have them
    second_ids: np.ndarray

    def pack(self) -> bytes:
        return (np.int64(len(self.ids)).tobytes() + self.ids.astype(np.int64).tobytes()
                + self.best_ids.astype(np.int64).tobytes() + self.second_ids.astype(np.int64).tobytes()
                + self.best.astype(np.float64).tobytes() + self.second.astype(np.float64).tobytes())

    @classmethod
    def unpack(cls, raw: bytes, offset: int) -> tuple[SideProfile, int]:
        k = int(np.frombuffer(raw, np.int64, count=1, offset=offset)[0])
        columns = [np.frombuffer(raw, np.int64 if c < 3 else np.float64, count=k, offset=offset + _HEADER + 8 * k * c)
                   for c in range(5)]
        ids, best_ids, second_ids, best, second = columns
        return cls(ids, best, second, best_ids, second_ids), offset + _HEADER + 40 * k


PairProfile = tuple[SideProfile, SideProfile]  # the left side's sampled records, then the right's


def pair_profile(left, right, samples: tuple[np.ndarray, np.ndarray], floor: float, engine,
                 kept: PairProfile | None, unchanged: dict) -> PairProfile:
    """The pair's profile at ``floor`` (``left``, ``right``: DepartmentRecords; ``samples``: their
    ``sample_rows``); with ``kept``, the previous run's at the same floor, and ``unchanged`` (per
    department: this run's rows of the unchanged records and their previous ids), re-scoring only
    what changed (module doc)."""
    return tuple(_side(a, b, rows, floor, engine, None if kept is None else kept[k], unchanged)
                 for k, (a, b, rows) in enumerate(((left, right, samples[0]), (right, left, samples[1]))))


def _side(a, b, rows: np.ndarray, floor: float, engine, kept: SideProfile | None, unchanged: dict) -> SideProfile:
    rows = rows if len(b.ids) else np.empty(0, np.int64)
    n = len(rows)
    best, second = np.full(n, -1.0), np.full(n, -1.0)
    best_row, second_row = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    if n:
        redo = np.ones(n, bool)
        if kept is not None:
            at, kept_rows = _kept(rows, kept, unchanged[a.department], unchanged[b.department])
            redo = at < 0
            _update(a.filters[rows[~redo]], b.filters, floor, engine, unchanged[b.department][0],
                    kept, at[~redo], kept_rows, (best, second, best_row, second_row), ~redo)
        if redo.any():
            found = engine.best_two(np.ascontiguousarray(a.filters[rows[redo]]), b.filters, floor)
            for column, values in zip((best, second, best_row, second_row), found):
                column[redo] = values
    ids_b = b.ids
    return SideProfile(a.ids[rows], best, second, np.where(best_row >= 0, ids_b[np.maximum(best_row, 0)], -1),
                       np.where(second_row >= 0, ids_b[np.maximum(second_row, 0)], -1))


def to_rows(ids: np.ndarray, unchanged: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Previous record ids as this run's row indices, -1 for a record removed or changed since."""
    rows, earlier = unchanged
    if not len(earlier):
        return np.full(len(ids), -1, np.int64)
    order = np.argsort(earlier)
    rows, earlier = rows[order], earlier[order]
    at = np.minimum(np.searchsorted(earlier, ids), len(earlier) - 1)
    return np.where(earlier[at] == ids, rows[at], -1)


def _kept(rows: np.ndarray, kept: SideProfile, unchanged_a, unchanged_b) -> tuple[np.ndarray, tuple]:
    """For each sampled row: its entry in ``kept`` (-1 where it must be re-scored in full), and every
    kept entry's two partners as this run's rows of the other side (-1: gone or changed)."""
    before = np.full(len(rows), -1, np.int64)  # each sampled row's previous id, -1: new or changed
    now, earlier = unchanged_a
    pos = np.searchsorted(now, rows)
    hit = (pos < len(now)) & (now[np.minimum(pos, len(now) - 1)] == rows) if len(now) else np.zeros(len(rows), bool)
    before[hit] = earlier[pos[hit]]
    order = np.argsort(kept.ids)
    sorted_ids = kept.ids[order]
    at = np.full(len(rows), -1, np.int64)
    if len(sorted_ids):
        k = np.minimum(np.searchsorted(sorted_ids, before), len(sorted_ids) - 1)
        at = np.where((before >= 0) & (sorted_ids[k] == before), order[k], -1)
    first, second = (to_rows(ids, unchanged_b) for ids in (kept.best_ids, kept.second_ids))
    # A partner gone or changed: the best among the unchanged records is not known.
    lost = ((kept.best >= 0) & (first < 0)) | ((kept.second >= 0) & (second < 0))
    at = np.where((at >= 0) & ~lost[np.maximum(at, 0)], at, -1)
    return at, (first, second)


def _update(filters_a, filters_b, floor, engine, unchanged_rows_b, kept, at, kept_rows, out, where) -> None:
    """The kept rows' two best: the kept two against the best two among the other side's new or
    changed records."""
    changed_b = np.setdiff1d(np.arange(len(filters_b)), unchanged_rows_b, assume_unique=True)
    first, second = kept_rows
    scores = [kept.best[at], kept.second[at]]
    partners = [first[at], second[at]]
    if len(changed_b) and len(filters_a):
        s1, s2, r1, r2 = engine.best_two(np.ascontiguousarray(filters_a), np.ascontiguousarray(filters_b[changed_b]),
                                         floor)
        scores += [s1, s2]
        partners += [np.where(r1 >= 0, changed_b[np.maximum(r1, 0)], -1),
                     np.where(r2 >= 0, changed_b[np.maximum(r2, 0)], -1)]
    scores, partners = np.stack(scores, axis=1), np.stack(partners, axis=1)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :2]
    pick = np.take_along_axis
    best, second, best_row, second_row = out
    best[where], second[where] = pick(scores, top[:, :1], 1)[:, 0], pick(scores, top[:, 1:2], 1)[:, 0]
    best_row[where], second_row[where] = pick(partners, top[:, :1], 1)[:, 0], pick(partners, top[:, 1:2], 1)[:, 0]
