"""Candidate generation at the coordinator: Hamming LSH over the filters.

The coordinator never holds the linkage secret, so it cannot block on names or
dates.  It blocks on the filters themselves, by *bit sampling* (the Hamming
LSH of Indyk and Motwani, used for Bloom-filter PPRL as "HLSH" by Karapiperis
and Verykios): ``bands`` (L) bands, each the values of ``rows`` (r) filter
bit positions drawn at random (a seeded generator, so every run and every
worker draws the same positions).  Two records are *candidates* when their r
sampled bits are equal in at least one band.

Choice of r and L
-----------------
The default is r = 26, L = 1200, chosen on the agents' real encodings
(balanced filters, fill 0.5) of a synth scenario with doubled errors: pair
completeness 0.996 of all true pairs, 7.1e-4 of the pairs compared
(docs/scale.md, ``bench/scale.py --scenario``).  Real filters share tokens
(sex, birth years, common surnames, addresses), so unrelated pairs agree on
more bits than the independent-bits model below says: the old default
r = 20, L = 600 compared 14% of the pairs of real (pre-balance) encodings.
The model below still explains the shape of the trade-off; the figures for
choosing come from the measured per-pair bit agreement.  r over 31 is
allowed: the sampled bits are then hashed to a 31-bit key.

Two filters of popcounts ``ka`` and ``kb`` with Dice ``d`` differ in
``(ka + kb) (1 - d)`` bits, so with mean fill ``f`` one sampled bit agrees
with probability ``s = 1 - 2 f (1 - d)``, and

    P(candidate) = 1 - (1 - s^r)^L.

A true match at the threshold d = 0.8 with f = 0.5 has s = 0.80 (f = 0.45:
0.82; f = 0.55: 0.78).  Unrelated filters agree on a bit with
``s0 = f^2 + (1 - f)^2``: 0.505 at f = 0.45, 0.50 at f = 0.5, 0.52 at
f = 0.4.  Larger r lowers the false rate ``~ L s0^r``; L must then grow as
``ln(1/miss) / s^r`` to keep the true matches.  For r = 20 and L = 600
(``LshParams()``, the default):

========================  ======  ==========================================
pair                      s       P(candidate)
========================  ======  ==========================================
Dice 0.80, fill 0.45      0.82    0.99999
Dice 0.80, fill 0.50      0.80    0.9990
Dice 0.80, fill 0.55      0.78    0.985
Dice 0.75, fill 0.45      0.775   0.975
Dice 0.75, fill 0.50      0.75    0.85
Dice 0.70, fill 0.50      0.70    0.38
unrelated, fill 0.45      0.505   7.0e-4 (the fraction of pairs compared)
unrelated, fill 0.50      0.50    5.7e-4
unrelated, fill 0.40      0.52    1.3e-3
========================  ======  ==========================================

Neighbouring choices, L set for P = 0.999 at s = 0.80, fraction compared at
fill 0.45: r = 16, L = 242: 4.3e-3; r = 18, L = 380: 1.7e-3; r = 20,
L = 596: 7.0e-4; r = 22, L = 933: 2.8e-4; r = 24, L = 1460: 1.1e-4.
r = 20 is the smallest r that compares under 1/1000 of the pairs at 45%
fill, and the work of hashing and sorting grows with L, so L = 600.
Measured (``bench/scale.py``, 20k x 20k perturbed filters, fill ~45%): pair
completeness 1.000 for true pairs of Dice >= 0.8, 0.976 at 0.75-0.8, 0.77
at 0.7-0.75; 7.1e-4 of the pairs compared.

For the default project threshold of 0.75 the default keeps 97.5% of the
pairs right at the threshold at 45% fill, and true matches mostly score
well above it.  ``LshParams.for_threshold(0.75)`` gives P = 0.999 there at
50% fill with r = 23, L = 5160 (about 9 times the work); with
``max_fraction=1.5e-2``, r = 16, L = 686 (1.2% of the pairs compared).

The fraction of unrelated pairs compared does not fall with the population,
so candidates grow as ``n * m * L * s0^r``: quadratic, with a constant about
1/1400 of the all-pairs work.  Up to ~100k records a side the per-band work
(linear in n + m) dominates; beyond it the candidates do.
``LshParams.for_threshold(..., pairs=n*m)`` raises r with the population
(r ~ log(n m) / log(1/s0)) to keep the candidates near-linear, at the price
of more bands (L ~ (n m)^rho, rho = ln s / ln s0, about 0.32): for 0.9M x
0.9M it asks r = 28, L = 3568; ``bench/scale.py --big`` uses r = 24,
L = 1460 (1.1e-4 compared, P = 0.999 at s = 0.80).

Algorithm
---------
Several departments (``lsh_links_multi``): the keys of every department in
a band are sorted together, tagged with their department, so each band is
one sort over all records instead of one per department pair, and each
department's keys are computed once; a bucket's rows of each department are
the same as in the two-department pass, so each pair's links are identical.

``band_keys`` packs each record's r sampled bits of each band into a uint32
(r <= 31), vectorised across records (blocks of 64 records transposed to
word-major).  For one band, the keys of both sides, tagged with side and
row, are packed into uint64 ``key << 32 | side << 31 | row`` and sorted
(NumPy's vectorised sort); each run of equal keys is one bucket, left rows
first, and a compiled loop emits the codes ``i * m + j`` of its cross pairs.
The bands are cut into slices run on a thread pool (``slice_candidates``,
also the unit of work of the Dask engine); each slice de-duplicates its own
codes (a true match collides in many bands) by sorting, and the slices'
codes are merged and de-duplicated by ranges of left rows, in parallel, so
the candidates come out unique and ordered by (left, right).

Pathological buckets: a bucket holding more than ``max_bucket`` records of
either side (filters that share an implausible pattern: blank records, a
template, a hardening artefact) is skipped in that band and counted
(``BlockingStats.buckets_skipped``, ``pairs_skipped``).  The counts are over
the whole of both sides in that band, so the result depends only on the
parameters, never on how bands are split across threads or Dask workers.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

import numba
import numpy as np
from numba import njit

from server.matching import ScoredPairs, dice_scores_pairs, popcounts

__all__ = [
    "BlockingStats",
    "LshParams",
    "band_keys",
    "band_positions",
    "candidate_probability",
    "lsh_candidates",
    "lsh_links",
    "score_candidates",
    "slice_candidates",
]

_jit = {"cache": True, "nogil": True, "fastmath": False}

_EXACT_ROWS = 31  # up to this many sampled bits, the band key is the bits themselves
_MAX_ROWS = 64  # beyond 31, the bits are hashed to a 31-bit key (see _keys_range)
# Multiply-shift hash of the sampled bits to 31 bits (the packed sort key holds
# 31 key bits, see _pack_band).  Two different bit patterns share a key with
# probability about 2^-31: over 1e12 pairs and 1000 bands that adds ~5e5
# candidates, which are scored and rejected like any other.
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)
_HASH_SHIFT = np.uint64(33)
_MAX_SIDE_ROWS = 1 << 31  # row index bits in the packed sort key
_KEY_BLOCK = 64  # records per vectorised block in band_keys
_KEY_BANDS = 16  # bands per pass over the records in band_keys


# --------------------------------------------------------------------------
# Parameters and statistics
# --------------------------------------------------------------------------


def candidate_probability(s: float | np.ndarray, rows: int, bands: int):
    """P(two records are candidates) when each sampled bit agrees with probability s."""
    return 1.0 - (1.0 - np.asarray(s, dtype=np.float64) ** rows) ** bands


def bit_agreement(dice: float, fill: float) -> float:
    """Probability that one bit agrees for two filters of mean fill ``fill`` and Dice ``dice``."""
    return 1.0 - 2.0 * fill * (1.0 - dice)


@dataclass(frozen=True)
class LshParams:
    """Bit-sampling LSH parameters (see the module notes for the choice)."""

    # Measured on the agents' real (balanced, fill 0.5) encodings of a synth
    # scenario with doubled errors (docs/scale.md): r = 26, L = 1200 keeps
    # 0.996 of the true pairs and compares 7e-4 of all pairs; the iid model
    # in the module notes is optimistic for real filters (shared tokens).
    bands: int = 1200
    rows: int = 26
    seed: int = 0
    max_bucket: int = 1000

    def __post_init__(self) -> None:
        if not 1 <= self.rows <= _MAX_ROWS:
            raise ValueError(f"rows must be in 1..{_MAX_ROWS}, got {self.rows}")
        if self.bands < 1:
            raise ValueError(f"bands must be positive, got {self.bands}")
        if self.max_bucket < 1:
            raise ValueError(f"max_bucket must be positive, got {self.max_bucket}")

    def probability(self, dice: float, fill: float = 0.5) -> float:
        """P(candidate) for a pair of the given Dice and mean fill."""
        return float(candidate_probability(bit_agreement(dice, fill), self.rows, self.bands))

    def expected_fraction(self, fill: float = 0.45) -> float:
        """Expected fraction of unrelated (independent random) pairs compared."""
        s0 = fill * fill + (1.0 - fill) * (1.0 - fill)
        return float(candidate_probability(s0, self.rows, self.bands))

    @classmethod
    def for_threshold(
        cls,
        threshold: float,
        *,
        fill: float = 0.5,
        recall: float = 0.999,
        max_fraction: float | None = None,
        pairs: int | None = None,
        **kwargs,
    ) -> LshParams:
        """The fewest bands reaching ``recall`` at Dice ``threshold`` and fill ``fill``.

        r is the smallest value whose expected fraction of unrelated pairs
        compared (at fill 0.45) is at most ``max_fraction``; by default
        1/1000, or, given ``pairs`` (n*m), about 20 candidates per record of
        the larger side when that is stricter.  L then follows from the
        formula.  Raises ValueError when no r <= 31 gets there.
        """
        s = bit_agreement(threshold, fill)
        if not 0.0 < s < 1.0 or not 0.0 < recall < 1.0:
            raise ValueError("threshold, fill and recall give no usable bit agreement")
        if max_fraction is None:
            max_fraction = 1e-3
            if pairs:
                max_fraction = min(max_fraction, 20.0 / math.sqrt(pairs))
        for rows in range(8, _MAX_ROWS + 1):
            bands = math.ceil(math.log1p(-recall) / math.log1p(-(s**rows)))
            params = cls(bands=bands, rows=rows, **kwargs)
            if params.expected_fraction() <= max_fraction:
                return params
        raise ValueError(f"no rows <= {_MAX_ROWS} compares at most {max_fraction} of the pairs")


@dataclass
class BlockingStats:
    """What blocking did, summed over the calls it was passed to."""

    pairs_total: int = 0  # n * m: what all-pairs comparison would do
    pairs_compared: int = 0  # unique candidate pairs scored
    buckets_skipped: int = 0  # (band, bucket)s over max_bucket, not expanded
    pairs_skipped: int = 0  # pairs those buckets would have emitted (with repeats across bands)
    calls: int = 0

    @property
    def fraction(self) -> float:
        """Fraction of all pairs compared."""
        return self.pairs_compared / self.pairs_total if self.pairs_total else 0.0

    def add(self, other: BlockingStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


# --------------------------------------------------------------------------
# Band keys
# --------------------------------------------------------------------------


def band_positions(filter_bits: int, bands: int, rows: int, seed: int = 0) -> np.ndarray:
    """``(bands, rows)`` filter bit positions, distinct within a band, from ``seed``."""
    if rows > filter_bits:
        raise ValueError(f"rows ({rows}) exceeds the filter width ({filter_bits} bits)")
    rng = np.random.default_rng([seed, filter_bits, bands, rows])
    # One independent draw without replacement per band: argsort of uniforms.
    return np.argsort(rng.random((bands, filter_bits)), axis=1)[:, :rows].astype(np.int64)


@njit(**_jit)
def _keys_range(filters, r0, r1, word, shift, out):
    """out[b, i] = key of record i in band b, for r0 <= i < r1.

    Blocks of records are transposed to word-major so that each sampled bit
    is extracted for a whole block at once (vectorised across records); a
    few bands at a time, so the rows of ``out`` being written stay few.
    """
    n_words = filters.shape[1]
    hashed = word.shape[1] > _EXACT_ROWS
    words = np.zeros((n_words, _KEY_BLOCK), np.uint64)
    acc = np.empty(_KEY_BLOCK, np.uint64)
    one = np.uint64(1)
    for b0 in range(0, word.shape[0], _KEY_BANDS):
        b1 = min(b0 + _KEY_BANDS, word.shape[0])
        for i0 in range(r0, r1, _KEY_BLOCK):
            count = min(_KEY_BLOCK, r1 - i0)
            for k in range(count):
                for w in range(n_words):
                    words[w, k] = filters[i0 + k, w]
            for b in range(b0, b1):
                acc[:] = 0
                for t in range(word.shape[1]):
                    row = words[word[b, t]]
                    sh = shift[b, t]
                    bit = np.uint64(t)
                    for k in range(_KEY_BLOCK):
                        acc[k] |= ((row[k] >> sh) & one) << bit
                if hashed:
                    for k in range(count):
                        out[b, i0 + k] = np.uint32((acc[k] * _HASH_MULT) >> _HASH_SHIFT)
                else:
                    for k in range(count):
                        out[b, i0 + k] = np.uint32(acc[k])


def _threads() -> int:
    return max(1, numba.get_num_threads())


def _parallel(fn, items):
    """``fn`` over ``items`` on a pool of numba's thread count (fn releases the GIL).

    Returns an iterator over the results, in order.
    """
    items = list(items)
    threads = min(_threads(), len(items))
    if threads <= 1:
        return map(fn, items)
    pool = ThreadPoolExecutor(max_workers=threads)
    try:
        results = pool.map(fn, items)
    finally:
        pool.shutdown(wait=False)
    return results


def _keys(filters: np.ndarray, positions: np.ndarray, parallel: bool = True) -> np.ndarray:
    n = filters.shape[0]
    word = positions // 64
    shift = (63 - positions % 64).astype(np.uint64)
    out = np.empty((positions.shape[0], n), np.uint32)
    if n == 0:
        return out
    if not parallel:
        _keys_range(filters, 0, n, word, shift, out)
        return out
    step = max(_KEY_BLOCK, -(-n // (4 * _threads())) // _KEY_BLOCK * _KEY_BLOCK)
    list(_parallel(lambda r: _keys_range(filters, r, min(r + step, n), word, shift, out), range(0, n, step)))
    return out


def band_keys(filters: np.ndarray, bands: int, rows: int, seed: int = 0) -> np.ndarray:
    """``(bands, n)`` uint32: the packed sampled bits of every record in every band.

    Bit t of ``keys[b, i]`` is filter bit ``band_positions(...)[b, t]`` of record i.
    For ``rows`` over 31 the key is a 31-bit hash of those bits instead:
    ``((bits as uint64) * 0x9E3779B97F4A7C15 mod 2^64) >> 33``.
    """
    from server.matching import _as_filters

    filters = _as_filters(filters, "filters")
    return _keys(filters, band_positions(filters.shape[1] * 64, bands, rows, seed))


# --------------------------------------------------------------------------
# Buckets and pairs
# --------------------------------------------------------------------------


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


def _unique_sorted(parts: list[np.ndarray]) -> np.ndarray:
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


class _Dedup:
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
            self.parts = [_unique_sorted(self.parts)]
            self.compacted = len(self.parts[0])
            self.pending = 0

    def result(self) -> np.ndarray:
        return _unique_sorted(self.parts)


def slice_candidates(
    left: np.ndarray, right: np.ndarray, positions: np.ndarray, max_bucket: int
) -> tuple[np.ndarray, int, int]:
    """Candidate codes ``i * m + j`` (sorted, unique) of the bands with these positions.

    One thread's work: the caller splits the bands.  Returns (codes, buckets
    skipped, pairs skipped).
    """
    n, m = left.shape[0], right.shape[0]
    left_keys = _keys(left, positions, parallel=False)
    right_keys = _keys(right, positions, parallel=False)
    packed = np.empty(n + m, np.uint64)
    found = _Dedup(4 * (n + m))
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
    count = max(parts or 4 * _threads(), -(-bands // per_slice))
    cuts = np.linspace(0, bands, min(bands, count) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]


def _candidate_ranges(left, right, params: LshParams, stats, progress, on_range) -> list:
    """Find the candidates, then hand them to ``on_range`` by ranges of left rows.

    Slices of bands run on the thread pool; their (sorted, unique) pair
    codes are gathered, compacted as they come in.  Then the code space is
    cut into ranges of left rows and each range is de-duplicated and passed
    to ``on_range(codes)`` on the pool.  Returns ``on_range``'s results in
    order of the ranges (so in (left, right) order).
    """
    from server.matching import _check_pair

    left, right = _check_pair(left, right)
    n, m = left.shape[0], right.shape[0]
    if max(n, m) >= _MAX_SIDE_ROWS:
        raise ValueError(f"at most {_MAX_SIDE_ROWS - 1} records a side")
    local = BlockingStats(pairs_total=n * m, calls=1)
    results = []
    if n and m:
        positions = band_positions(left.shape[1] * 64, params.bands, params.rows, params.seed)
        slices = band_slices(params.bands, n, m)
        found = _Dedup(4 * (n + m))
        work = _parallel(lambda r: slice_candidates(left, right, positions[r[0] : r[1]], params.max_bucket), slices)
        for (b0, b1), (codes, buckets, skipped) in zip(slices, work):
            found.add(codes)
            local.buckets_skipped += int(buckets)
            local.pairs_skipped += int(skipped)
            if progress is not None:
                progress(b1, params.bands)
        parts = found.parts
        cuts = np.linspace(0, n, min(n, 4 * _threads()) + 1).round().astype(np.int64) * m

        def merge(k):
            lo, hi = cuts[k], cuts[k + 1]
            codes = _unique_sorted([p[np.searchsorted(p, lo) : np.searchsorted(p, hi)] for p in parts])
            return len(codes), on_range(codes)

        done = list(_parallel(merge, range(len(cuts) - 1)))
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
    parts = _candidate_ranges(left, right, params, stats, progress, lambda codes: codes)
    codes = np.concatenate(parts) if parts else np.empty(0, np.int64)
    if m == 0:
        return codes, codes.copy()
    return codes // m, codes % m


def lsh_links(
    left: np.ndarray,
    right: np.ndarray,
    threshold: float,
    params: LshParams | None = None,
    *,
    stats: BlockingStats | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScoredPairs:
    """The candidates of ``lsh_candidates`` whose Dice reaches ``threshold``.

    The same as ``score_candidates(left, right, *lsh_candidates(...), threshold)``,
    with the de-duplication and scoring split across threads.
    """
    from server.matching import _check_threshold

    params = params or LshParams()
    threshold = _check_threshold(threshold)
    m = len(right)
    left_counts, right_counts = popcounts(left), popcounts(right)

    def score(codes):
        return score_candidates(
            left, right, codes // m, codes % m, threshold,
            left_counts=left_counts, right_counts=right_counts,
        )

    parts = [p for p in _candidate_ranges(left, right, params, stats, progress, score) if len(p)]
    if not parts:
        return ScoredPairs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
    return ScoredPairs(*(np.concatenate(column) for column in zip(*((p.left, p.right, p.score) for p in parts))))


def score_candidates(
    left: np.ndarray,
    right: np.ndarray,
    li: np.ndarray,
    rj: np.ndarray,
    threshold: float,
    *,
    left_counts: np.ndarray | None = None,
    right_counts: np.ndarray | None = None,
) -> ScoredPairs:
    """The candidates whose Dice reaches ``threshold``, as ``dice_scores_above`` scores them.

    ``dice_scores_pairs`` gives the float32 Dice.  Whether a pair passes is
    decided as the exact kernel decides it, on the overlap count against the
    least passing count for ``|A| + |B|``; the overlap is recovered exactly
    from the float32 score (its error is far below one half), for the pairs
    whose score is within 1e-6 of the threshold or above (a float32 score is
    within 6e-8 of the float64 Dice).  Pairs keep the order of ``li``, ``rj``.
    """
    from server.matching import _check_threshold, _need_table

    threshold = _check_threshold(threshold)
    li = np.asarray(li, np.int64)
    rj = np.asarray(rj, np.int64)
    score = dice_scores_pairs(left, right, li, rj)
    near = np.flatnonzero(score >= threshold - 1e-6)
    li, rj, score = li[near], rj[near], score[near]
    left_counts = popcounts(left) if left_counts is None else left_counts
    right_counts = popcounts(right) if right_counts is None else right_counts
    total = left_counts[li].astype(np.int64) + right_counts[rj]
    overlap = np.rint(score.astype(np.float64) * total / 2.0).astype(np.int64)
    keep = overlap >= _need_table(threshold, left.shape[1] * 64)[total]
    return ScoredPairs(li[keep], rj[keep], score[keep])


# --------------------------------------------------------------------------
# Several departments at once
# --------------------------------------------------------------------------

_PARTY_BITS = 3  # parties per multi-party pass: at most 8 (the sort key holds the party in 3 bits)
_MULTI_ROW_BITS = 28  # rows per party in the multi-party sort key
_PAIR_SHIFT = 48  # a multi-party candidate is pair_index << 48 | (i * m + j)


@njit(**_jit)
def _pack_multi(keys, offsets, out):
    """out = key << 32 | party << 28 | row for every party's rows of one band."""
    for p in range(offsets.shape[0] - 1):
        tag = np.uint64(p) << np.uint64(_MULTI_ROW_BITS)
        for r in range(offsets[p + 1] - offsets[p]):
            out[offsets[p] + r] = (np.uint64(keys[offsets[p] + r]) << np.uint64(32)) | tag | np.uint64(r)


@njit(**_jit)
def _emit_band_multi(packed, sizes, pair_index, max_bucket):
    """Codes ``pair << 48 | i * m_b + j`` of the cross-party pairs of each bucket of one sorted band.

    ``pair_index[a, b]`` (a < b) numbers the party pairs wanted, -1 for the
    others.  A run of equal keys is a bucket; within it rows come party by
    party.  A party pair is skipped in a bucket holding more than
    ``max_bucket`` rows of either party, exactly as the two-party pass
    decides.  Returns (codes, buckets skipped, pairs skipped), the last two
    summed over party pairs.
    """
    key_shift = np.uint64(32)
    party_mask = np.uint64((1 << _PARTY_BITS) - 1)
    row_mask = np.uint64((1 << _MULTI_ROW_BITS) - 1)
    n = packed.shape[0]
    n_parties = sizes.shape[0]
    bounds = np.zeros(n_parties + 1, np.int64)
    skipped_buckets = 0
    skipped_pairs = 0
    codes = np.empty(0, np.int64)
    total = 0
    for sweep in range(2):  # count, then fill
        if sweep == 1:
            codes = np.empty(total, np.int64)
        total = 0
        s = 0
        while s < n:
            e = s + 1
            key = packed[s] >> key_shift
            while e < n and (packed[e] >> key_shift) == key:
                e += 1
            if e - s > 1:
                first = (packed[s] >> np.uint64(_MULTI_ROW_BITS)) & party_mask
                last = (packed[e - 1] >> np.uint64(_MULTI_ROW_BITS)) & party_mask
                if first != last:
                    # Where each party's rows start in this run.
                    k = s
                    for p in range(n_parties):
                        bounds[p] = k
                        while k < e and ((packed[k] >> np.uint64(_MULTI_ROW_BITS)) & party_mask) == p:
                            k += 1
                    bounds[n_parties] = e
                    for a in range(n_parties):
                        ca = bounds[a + 1] - bounds[a]
                        if ca == 0:
                            continue
                        for b in range(a + 1, n_parties):
                            cb = bounds[b + 1] - bounds[b]
                            if cb == 0 or pair_index[a, b] < 0:
                                continue
                            if ca > max_bucket or cb > max_bucket:
                                if sweep == 0:
                                    skipped_buckets += 1
                                    skipped_pairs += ca * cb
                                continue
                            if sweep == 1:
                                tag = np.int64(pair_index[a, b]) << _PAIR_SHIFT
                                m = sizes[b]
                                for x in range(bounds[a], bounds[a + 1]):
                                    base = tag | (np.int64(packed[x] & row_mask) * m)
                                    for y in range(bounds[b], bounds[b + 1]):
                                        codes[total] = base + np.int64(packed[y] & row_mask)
                                        total += 1
                            else:
                                total += ca * cb
            s = e
    return codes, skipped_buckets, skipped_pairs


def multi_slice_links(filters, counts, positions, pair_index, pair_keys, thresholds, max_bucket, on_band=None):
    """One slice of bands over all parties at once: its candidates, scored; the passing ones.

    The multi-party form of ``slice_candidates`` followed by
    ``score_candidates``: one sort per band over every party's records
    instead of one per party pair.  Keys are computed ``_KEY_BANDS`` bands at
    a time (a few hundred MB at 3M records, not the whole slice).  The
    slice's candidates are de-duplicated and scored here, and only the
    pairs reaching their pair's threshold leave: what is kept grows with the
    links, not with the candidates (a true pair is a candidate in about half
    of the bands).  Returns (pair-tagged codes, scores, candidates scored,
    buckets skipped, pairs skipped).
    """
    sizes = np.array([len(f) for f in filters], np.int64)
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    packed = np.empty(offsets[-1], np.uint64)
    found = _Dedup(4 * int(offsets[-1]))
    buckets = skipped = 0
    for b0 in range(0, positions.shape[0], _KEY_BANDS):
        chunk = positions[b0:b0 + _KEY_BANDS]
        keys = np.empty((chunk.shape[0], offsets[-1]), np.uint32)
        for p, f in enumerate(filters):
            keys[:, offsets[p]:offsets[p + 1]] = _keys(f, chunk, parallel=False)
        for b in range(chunk.shape[0]):
            _pack_multi(keys[b], offsets, packed)
            packed.sort()
            codes, nb, ns = _emit_band_multi(packed, sizes, pair_index, max_bucket)
            buckets += nb
            skipped += ns
            found.add(codes)
        if on_band is not None:
            on_band(chunk.shape[0])
    codes = found.result()
    del found
    cuts = np.searchsorted(codes, np.arange(len(pair_keys) + 1, dtype=np.int64) << _PAIR_SHIFT)
    kept_codes, kept_scores = [], []
    for k, (pa, pb) in enumerate(pair_keys):
        tag = np.int64(k) << _PAIR_SHIFT
        pair_codes = codes[cuts[k]:cuts[k + 1]] - tag
        m = sizes[pb]
        passing = score_candidates(filters[pa], filters[pb], pair_codes // m, pair_codes % m, thresholds[k],
                                   left_counts=counts[pa], right_counts=counts[pb])
        kept_codes.append(tag + passing.left * m + passing.right)
        kept_scores.append(passing.score)
    return np.concatenate(kept_codes), np.concatenate(kept_scores), len(codes), buckets, skipped


def lsh_links_multi(
    filters: list[np.ndarray],
    pairs: dict[tuple[int, int], float],
    params: LshParams | None = None,
    *,
    stats: BlockingStats | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[tuple[int, int], ScoredPairs]:
    """``lsh_links`` for several party pairs in one pass over the bands.

    ``pairs`` maps (a, b), a < b, to that pair's threshold.  For each pair
    the result is identical to ``lsh_links(filters[a], filters[b],
    threshold, params)``: a bucket's rows of each party are the same whether
    the parties are sorted together or two at a time.  The work per band is
    one sort over all parties' records instead of one per pair (each party
    appears in n_parties - 1 pairs).  ``progress(bands done, bands)``.
    In ``stats``, ``pairs_compared`` counts a candidate once per slice of
    bands that scored it (the work done, as the Dask engine counts).
    """
    from server.matching import _check_pair, _check_threshold

    params = params or LshParams()
    parties = sorted({p for pair in pairs for p in pair})
    if len(parties) > 1 << _PARTY_BITS:
        raise ValueError(f"at most {1 << _PARTY_BITS} parties in one multi-party pass")
    local = [filters[p] for p in parties]
    for f in local[1:]:
        _check_pair(local[0], f)
    sizes = [len(f) for f in local]
    if max(sizes) >= 1 << _MULTI_ROW_BITS or max(
        sizes[parties.index(a)] * sizes[parties.index(b)] for a, b in pairs
    ) >= 1 << _PAIR_SHIFT:
        raise ValueError("too many records for a multi-party pass; compare the pairs one by one")
    order = sorted(pairs)
    pair_index = np.full((len(parties), len(parties)), -1, np.int64)
    for k, (a, b) in enumerate(order):
        pair_index[parties.index(a), parties.index(b)] = k
    filter_bits = local[0].shape[1] * 64
    positions = band_positions(filter_bits, params.bands, params.rows, params.seed)
    counts = [popcounts(f) for f in local]
    pair_keys = [(parties.index(a), parties.index(b)) for a, b in order]
    thresholds = [_check_threshold(pairs[pair]) for pair in order]
    # A few slices per thread, each de-duplicating and scoring its own
    # candidates (memory bounded by the links: see multi_slice_links).
    cuts = np.linspace(0, params.bands, min(params.bands, 4 * _threads()) + 1).round().astype(int)
    slices = [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]
    done, lock = [0], threading.Lock()

    def on_band(count):
        with lock:
            done[0] += count
            if progress is not None and done[0] < params.bands:
                progress(done[0], params.bands)

    work = _parallel(lambda r: multi_slice_links(local, counts, positions[r[0]:r[1]], pair_index, pair_keys,
                                                 thresholds, params.max_bucket, on_band), slices)
    codes, scores = [], []
    compared = buckets = skipped = 0
    for c, sc, n_scored, nb, ns in work:
        codes.append(c)
        scores.append(sc)
        compared += int(n_scored)
        buckets += int(nb)
        skipped += int(ns)
    codes = np.concatenate(codes) if codes else np.empty(0, np.int64)
    scores = np.concatenate(scores) if scores else np.empty(0, np.float32)
    codes, first = np.unique(codes, return_index=True)  # a link found by several slices
    scores = scores[first]
    cuts = np.searchsorted(codes, np.arange(len(order) + 1, dtype=np.int64) << _PAIR_SHIFT)
    out = {}
    for k, (a, b) in enumerate(order):
        m = sizes[pair_keys[k][1]]
        pair_codes = codes[cuts[k]:cuts[k + 1]] - (np.int64(k) << _PAIR_SHIFT)
        out[(a, b)] = ScoredPairs(pair_codes // m, pair_codes % m, scores[cuts[k]:cuts[k + 1]])
    if stats is not None:
        # Like the Dask engine: a candidate counts once per slice that scored it (the work done).
        stats.add(BlockingStats(
            pairs_total=sum(sizes[pa] * sizes[pb] for pa, pb in pair_keys),
            pairs_compared=compared, buckets_skipped=buckets, pairs_skipped=skipped, calls=len(order)))
    return out
