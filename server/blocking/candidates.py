"""Two departments' candidates: buckets of equal band keys, their cross pairs, de-duplicated.

For one band, the keys of both sides, tagged with side and row, are packed
into uint64 ``key << 32 | side << 31 | row`` and sorted (NumPy's vectorised
sort); each run of equal keys is one bucket, left rows first, and a compiled
loop emits the codes ``i * m + j`` of its cross pairs.  The bands are cut
into slices run as tasks (``slice_candidates``); each slice de-duplicates
its own codes (a true match collides in many bands) by sorting, and the
slices' codes are merged and de-duplicated by ranges of left rows, in
parallel, so the candidates come out unique and ordered by (left, right).

Pathological buckets: a bucket holding more than ``max_bucket`` records of
either side (filters that share an implausible pattern: blank records, a
template, a hardening artefact) is skipped in that band and counted
(``BlockingStats.buckets_skipped``, ``pairs_skipped``).  The counts are over
the whole of both sides in that band, so the result depends only on the
parameters, never on how bands are split across threads or Dask workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
from numba import njit

from server.blocking.keys import band_positions, sampled_keys
from server.blocking.params import BlockingStats, LshParams
from server.blocking.tasks import THREADS, Tasks, parallel, thread_count
from server.matching import check_pair

_jit = {"cache": True, "nogil": True, "fastmath": False}

_MAX_SIDE_ROWS = 1 << 31  # row index bits in the packed sort key


@njit(**_jit)
def _pack_band(left_keys, right_keys, out):
    """out = key << 32 | side << 31 | row for one band's left then right rows."""
    n = left_keys.shape[0]
    side = np.uint64(1) << np.uint64(31)
    for i in range(n):
        out[i] = (np.uint64(left_keys[i]) << np.uint64(32)) | np.uint64(i)
    for j in range(right_keys.shape[0]):
        out[n + j] = (np.uint64(right_keys[j]) << np.uint64(32)) | side | np.uint64(j)


@njit(**_jit)
def _emit_band(packed, m, max_bucket):
    """Codes ``i * m + j`` of the cross pairs of each bucket of one sorted band.

    A run of equal keys is a bucket, its left rows first (the side bit).
    Buckets with more than ``max_bucket`` rows of a side are skipped.
    Returns (codes, buckets skipped, pairs skipped).
    """
    key_shift = np.uint64(32); side = np.uint64(1) << np.uint64(31); mask = np.uint64(0x7FFFFFFF)
    n = packed.shape[0]
    # Second and later elements of each run of equal keys, without branches.
    later = np.empty(n, np.int64)
    count = 0
    for k in range(1, n):
        later[count] = k
        count += ((packed[k] ^ packed[k - 1]) >> key_shift) == 0
    # Runs (start, split, end) holding both sides: left rows start..split, right split..end.
    runs = np.empty((count, 3), np.int64)
    n_runs = 0
    total = 0; buckets = 0; skipped = 0
    q = 0
    while q < count:
        s = later[q] - 1
        e = later[q] + 1
        q += 1
        while q < count and later[q] == e:
            e += 1
            q += 1
        if (packed[s] & side) != 0 or (packed[e - 1] & side) == 0:
            continue
        split = s + 1
        while (packed[split] & side) == 0:
            split += 1
        n_left = split - s
        n_right = e - split
        if n_left > max_bucket or n_right > max_bucket:
            buckets += 1
            skipped += n_left * n_right
            continue
        runs[n_runs, 0] = s; runs[n_runs, 1] = split; runs[n_runs, 2] = e
        n_runs += 1
        total += n_left * n_right
    codes = np.empty(total, np.int64)
    size = 0
    for r in range(n_runs):
        for x in range(runs[r, 0], runs[r, 1]):
            base = np.int64(packed[x] & mask) * m
            for y in range(runs[r, 1], runs[r, 2]):
                codes[size] = base + np.int64(packed[y] & mask)
                size += 1
    return codes, buckets, skipped


def unique_sorted(parts: list[np.ndarray]) -> np.ndarray:
    """Sorted unique values of the concatenated int64 arrays."""
    if not parts:
        return np.empty(0, np.int64)
    codes = np.sort(np.concatenate(parts) if len(parts) > 1 else parts[0])
    if codes.size:
        keep = np.empty(codes.size, bool)
        keep[0] = True
        np.not_equal(codes[1:], codes[:-1], out=keep[1:])
        codes = codes[keep]
    return codes


class Dedup:
    """Accumulates pair codes, compacting (sort, unique) when repeats pile up.

    A compaction happens when the codes added since the last one exceed both
    ``limit`` and the size of the compacted set, so the work stays linear.
    """

    def __init__(self, limit: int):
        self.parts: list[np.ndarray] = []
        self.pending = 0
        self.limit = limit
        self.compacted = 0

    def add(self, codes: np.ndarray) -> None:
        self.parts.append(codes)
        self.pending += len(codes)
        if self.pending > max(self.limit, self.compacted) and len(self.parts) > 1:
            self.parts = [unique_sorted(self.parts)]
            self.compacted = len(self.parts[0])
            self.pending = 0

    def result(self) -> np.ndarray:
        return unique_sorted(self.parts)


def slice_candidates(
    left: np.ndarray, right: np.ndarray, max_bucket: int, positions: np.ndarray
) -> tuple[np.ndarray, int, int]:
    """Candidate codes ``i * m + j`` (sorted, unique) of the bands with these positions.

    One thread's work: the caller splits the bands.  Returns (codes, buckets
    skipped, pairs skipped).
    """
    n, m = left.shape[0], right.shape[0]
    left_keys = sampled_keys(left, positions, threaded=False)
    right_keys = sampled_keys(right, positions, threaded=False)
    packed = np.empty(n + m, np.uint64)
    found = Dedup(4 * (n + m))
    buckets = skipped = 0
    for b in range(positions.shape[0]):
        _pack_band(left_keys[b], right_keys[b], packed)
        packed.sort()
        codes, nb, ns = _emit_band(packed, m, max_bucket)
        buckets += nb
        skipped += ns
        found.add(codes)
    return found.result(), buckets, skipped


def band_slices(bands: int, n: int, m: int, parts: int | None = None) -> list[tuple[int, int]]:
    """Split the bands into ranges: at least ``parts`` (default 4 per thread),
    and few enough bands each that their keys stay within about 32 MiB."""
    per_slice = max(1, (32 << 20) // (4 * max(1, n + m)))
    count = max(parts or THREADS.parts(), -(-bands // per_slice))
    cuts = np.linspace(0, bands, min(bands, count) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]


def candidate_ranges(left, right, params: LshParams, stats, progress, on_range, tasks: Tasks = THREADS) -> list:
    """Find the candidates, then hand them to ``on_range`` by ranges of left rows.

    Slices of bands run as ``tasks``; their (sorted, unique) pair codes are
    gathered here, compacted as they come in.  Then the code space is cut
    into ranges of left rows and each range is de-duplicated and passed to
    ``on_range(codes)`` on this process's threads.  Returns ``on_range``'s
    results in order of the ranges (so in (left, right) order).
    """
    left, right = check_pair(left, right)
    n, m = left.shape[0], right.shape[0]
    if max(n, m) >= _MAX_SIDE_ROWS:
        raise ValueError(f"at most {_MAX_SIDE_ROWS - 1} records a side")
    local = BlockingStats(pairs_total=n * m, calls=1)
    results = []
    if n and m:
        positions = band_positions(left.shape[1] * 64, params.bands, params.rows, params.seed)
        slices = band_slices(params.bands, n, m, tasks.parts())
        found = Dedup(4 * (n + m))
        work = tasks.run(slice_candidates, (left, right, params.max_bucket),
                         [(positions[b0:b1],) for b0, b1 in slices], [b1 - b0 for b0, b1 in slices], progress)
        for codes, buckets, skipped in work:
            found.add(codes)
            local.buckets_skipped += int(buckets)
            local.pairs_skipped += int(skipped)
        parts = found.parts
        cuts = np.linspace(0, n, min(n, 4 * thread_count()) + 1).round().astype(np.int64) * m

        def merge(k):
            lo, hi = cuts[k], cuts[k + 1]
            codes = unique_sorted([p[np.searchsorted(p, lo) : np.searchsorted(p, hi)] for p in parts])
            return len(codes), on_range(codes)

        done = list(parallel(merge, range(len(cuts) - 1)))
        local.pairs_compared = sum(count for count, _ in done)
        results = [result for _, result in done]
    if stats is not None:
        stats.add(local)
    return results


def lsh_candidates(
    left: np.ndarray,
    right: np.ndarray,
    *,
    bands: int,
    rows: int,
    seed: int = 0,
    max_bucket: int = 1000,
    stats: BlockingStats | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (left rows, right rows), unique, sorted by (left, right).

    ``left`` and ``right`` come from ``pack_filters``.  A pair is a candidate
    when its sampled bits agree in some band whose bucket holds at most
    ``max_bucket`` records of each side.  ``stats``, when given, is added
    to; ``progress(bands done, bands)`` is called as slices of bands finish.
    """
    params = LshParams(bands=bands, rows=rows, seed=seed, max_bucket=max_bucket)
    m = len(right)
    parts = candidate_ranges(left, right, params, stats, progress, lambda codes: codes)
    codes = np.concatenate(parts) if parts else np.empty(0, np.int64)
    if m == 0:
        return codes, codes.copy()
    return codes // m, codes % m
