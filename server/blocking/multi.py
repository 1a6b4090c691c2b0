"""Every department pair in one pass over the bands: the run's blocked path.

The keys of every department in a band are sorted together, tagged with
their department, so each band is one sort over all records instead of one
per department pair, and each department's keys are computed once; a
bucket's rows of each department are the same as in the two-department pass
(``server.blocking.candidates``), so each pair's links are identical.  Each
slice of bands scores its own candidates (``multi_slice_links``, the task
every engine runs), so what leaves a task grows with the links, not with the
candidates.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit

from server.blocking.candidates import Dedup
from server.blocking.keys import KEY_BANDS, band_positions, bit_planes, sampled_keys
from server.blocking.params import BlockingStats, LshParams
from server.blocking.scoring import score_candidates
from server.blocking.tasks import THREADS, Tasks
from server.matching import ScoredPairs, check_pair, check_threshold, popcounts

_jit = {"cache": True, "nogil": True, "fastmath": False}

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


_HIT_MULT = np.uint64(0x9E3779B97F4A7C15)  # multiply-shift hash of a band key into the changed keys' table
_BITMAP_BITS = 18  # a 32 KB bitmap of the changed keys' hashes: it stays in the L1 cache while every row is tested


def _table_bits(changed_rows: int) -> int:
    """Slots of the changed keys' table, as a power of two: at least twice the keys (short probes)."""
    return max(4, int(2 * changed_rows - 1).bit_length())


@njit(**_jit)
def _pack_hits(keys, offsets, changed_rows, table_bits, table, bitmap, out):
    """``_pack_multi`` of only the rows whose key is some changed row's key in this band: every row of
    every bucket holding a changed record, so those buckets are whole. Returns how many were packed.

    ``changed_rows`` are global row indices (all parties' rows at ``offsets``). ``table`` (``1 <<
    table_bits`` slots, key + 1 or 0 for empty; open addressing) and ``bitmap`` (``1 << _BITMAP_BITS``
    bits) are scratch, filled here: every row is tested against the small bitmap first and only
    the few that pass are looked up in the table, which costs less than sorting every row per band.
    """
    mask = np.uint64((1 << table_bits) - 1)
    shift = np.uint64(64 - table_bits)
    bitmap_shift = np.uint64(64 - _BITMAP_BITS)
    table[:] = 0
    bitmap[:] = 0
    for x in range(changed_rows.shape[0]):
        want = np.uint64(keys[changed_rows[x]]) + np.uint64(1)
        hashed = want * _HIT_MULT
        bit = hashed >> bitmap_shift
        bitmap[bit >> np.uint64(6)] |= np.uint64(1) << (bit & np.uint64(63))
        slot = hashed >> shift
        while table[slot] != 0 and table[slot] != want:
            slot = (slot + np.uint64(1)) & mask
        table[slot] = want
    count = 0
    for p in range(offsets.shape[0] - 1):  # the rows that may hit, as (key, party, row), written branch-free
        tag = np.uint64(p) << np.uint64(_MULTI_ROW_BITS)
        for r in range(offsets[p + 1] - offsets[p]):
            key = np.uint64(keys[offsets[p] + r])
            bit = ((key + np.uint64(1)) * _HIT_MULT) >> bitmap_shift
            out[count] = (key << np.uint64(32)) | tag | np.uint64(r)
            count += np.int64((bitmap[bit >> np.uint64(6)] >> (bit & np.uint64(63))) & np.uint64(1))
    hits = 0
    for x in range(count):  # those that do
        want = (out[x] >> np.uint64(32)) + np.uint64(1)
        slot = (want * _HIT_MULT) >> shift
        while table[slot] != 0:
            if table[slot] == want:
                out[hits] = out[x]
                hits += 1
                break
            slot = (slot + np.uint64(1)) & mask
    return hits


@njit(**_jit)
def _flagged(packed, start, end, changed, offset):
    """How many of the sorted rows start..end (one party's, at ``offset``) are changed."""
    row_mask = np.uint64((1 << _MULTI_ROW_BITS) - 1)
    count = 0
    for x in range(start, end):
        count += changed[offset + np.int64(packed[x] & row_mask)]
    return count


@njit(**_jit)
def _emit_band_multi(packed, sizes, pair_index, max_bucket, offsets, changed):
    """Codes ``pair << 48 | i * m_b + j`` of the cross-party pairs of each bucket of one sorted band.

    ``changed`` (one flag per record, all parties' rows at ``offsets``), when
    not empty, keeps only the pairs with a changed record: an incremental
    run's new pairs (server/pipeline/increments.py). ``packed`` then holds
    only the buckets with a changed record, each whole (``_pack_hits``), so
    the ``max_bucket`` rule is still that of all the records; the largest
    bucket returned is only that of those buckets.

    ``pair_index[a, b]`` (a < b) numbers the party pairs wanted, -1 for the
    others.  A run of equal keys is a bucket; within it rows come party by
    party.  A party pair is skipped in a bucket holding more than
    ``max_bucket`` rows of either party, exactly as the two-party pass
    decides.  Returns (codes, buckets skipped, pairs skipped, largest
    bucket), the skips summed over party pairs, the largest bucket the most
    rows of one party under one key (an incremental run needs it to know
    that ``max_bucket`` skipped nothing: server/pipeline/increments.py).
    """
    key_shift = np.uint64(32)
    party_mask = np.uint64((1 << _PARTY_BITS) - 1)
    row_mask = np.uint64((1 << _MULTI_ROW_BITS) - 1)
    n = packed.shape[0]
    n_parties = sizes.shape[0]
    bounds = np.zeros(n_parties + 1, np.int64)
    skipped_buckets = 0
    skipped_pairs = 0
    largest = 0
    codes = np.empty(0, np.int64)
    total = 0
    only_changed = changed.shape[0] > 0
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
            if sweep == 0 and e - s > largest:  # one party's rows, or more: bounds below
                first = (packed[s] >> np.uint64(_MULTI_ROW_BITS)) & party_mask
                last = (packed[e - 1] >> np.uint64(_MULTI_ROW_BITS)) & party_mask
                if first == last:
                    largest = e - s
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
                        largest = max(largest, ca)
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
                                    row_x = np.int64(packed[x] & row_mask)
                                    base = tag | (row_x * m)
                                    keep_all = not only_changed or changed[offsets[a] + row_x]
                                    for y in range(bounds[b], bounds[b + 1]):
                                        row_y = np.int64(packed[y] & row_mask)
                                        if keep_all or changed[offsets[b] + row_y]:
                                            codes[total] = base + row_y
                                            total += 1
                            elif only_changed:
                                total += ca * cb - (ca - _flagged(packed, bounds[a], bounds[a + 1], changed,
                                                                  offsets[a])) * \
                                    (cb - _flagged(packed, bounds[b], bounds[b + 1], changed, offsets[b]))
                            else:
                                total += ca * cb
            s = e
    return codes, skipped_buckets, skipped_pairs, largest


def slice_codes(key_chunks, sizes: np.ndarray, pair_index, max_bucket: int, changed=None):
    """The unique pair-tagged candidate codes of some bands, from their keys.

    ``key_chunks`` yields ``(bands, total rows)`` uint32 keys, every party's
    rows side by side in party order (``sizes``), a few bands at a time: in
    process computed from the filters (``multi_slice_links``), on a cluster
    read from the key partitions (``server.engine.partitioned``).  Returns
    (codes, buckets skipped, pairs skipped, largest bucket).  ``changed``: one
    flag per row of all parties, only the pairs with a changed record
    (``_emit_band_multi``).
    """
    changed = np.empty(0, np.uint8) if changed is None else changed
    sizes = np.asarray(sizes, np.int64)
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    packed = np.empty(offsets[-1], np.uint64)
    found = Dedup(4 * int(offsets[-1]))
    buckets = skipped = largest = 0
    if len(changed):  # only the buckets holding a changed record are sorted and scanned
        changed_rows = np.flatnonzero(changed).astype(np.int64)
        table_bits = _table_bits(len(changed_rows))
        table = np.empty(1 << table_bits, np.uint64)
        bitmap = np.empty(1 << (_BITMAP_BITS - 6), np.uint64)
    for keys in key_chunks:
        for b in range(keys.shape[0]):
            if len(changed):
                band = packed[:_pack_hits(keys[b], offsets, changed_rows, table_bits, table, bitmap, packed)]
            else:
                band = packed
                _pack_multi(keys[b], offsets, band)
            band.sort()
            codes, nb, ns, big = _emit_band_multi(band, sizes, pair_index, max_bucket, offsets, changed)
            buckets += nb
            skipped += ns
            largest = max(largest, big)
            found.add(codes)
    return found.result(), buckets, skipped, largest


def multi_slice_links(filters, planes, counts, pair_index, pair_keys, thresholds, max_bucket, changed, positions):
    """One slice of bands over all parties at once: its candidates, scored; the passing ones.

    The multi-party form of ``slice_candidates`` followed by
    ``score_candidates``: one sort per band over every party's records
    instead of one per party pair.  Keys are computed ``KEY_BANDS`` bands at
    a time (a few hundred MB at 3M records, not the whole slice), from each
    party's ``bit_planes`` (made once per pass).  The
    slice's candidates are de-duplicated and scored here, and only the
    pairs reaching their pair's threshold leave: what is kept grows with the
    links, not with the candidates (a true pair is a candidate in about half
    of the bands).  Returns (pair-tagged codes, scores, candidates scored,
    buckets skipped, pairs skipped, largest bucket).
    """
    sizes = np.array([len(f) for f in filters], np.int64)

    def key_chunks():
        for b0 in range(0, positions.shape[0], KEY_BANDS):
            chunk = positions[b0:b0 + KEY_BANDS]
            yield np.concatenate([sampled_keys(f, chunk, threaded=False, planes=p) for f, p in zip(filters, planes)],
                                 axis=1)

    codes, buckets, skipped, largest = slice_codes(key_chunks(), sizes, pair_index, max_bucket, changed)
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
    return np.concatenate(kept_codes), np.concatenate(kept_scores), len(codes), buckets, skipped, largest


@dataclass(frozen=True)
class PassPlan:
    """Who takes part in a multi-party pass: the parties (departments, sorted), the pairs in order,
    ``pair_index[a, b]`` (party positions) numbering them, -1 for the others, and each pair's positions."""

    parties: list[int]
    order: list[tuple[int, int]]
    pair_index: np.ndarray
    pair_keys: list[tuple[int, int]]

    @classmethod
    def of(cls, pairs, sizes: list[int]) -> PassPlan:
        """``pairs``: (a, b) department pairs, a < b; ``sizes``: every department's record count."""
        parties = sorted({p for pair in pairs for p in pair})
        if len(parties) > 1 << _PARTY_BITS:
            raise ValueError(f"at most {1 << _PARTY_BITS} parties in one multi-party pass")
        if max(sizes[p] for p in parties) >= 1 << _MULTI_ROW_BITS or max(
                sizes[a] * sizes[b] for a, b in pairs) >= 1 << _PAIR_SHIFT:
            raise ValueError("too many records for a multi-party pass; compare the pairs one by one")
        order = sorted(pairs)
        pair_index = np.full((len(parties), len(parties)), -1, np.int64)
        for k, (a, b) in enumerate(order):
            pair_index[parties.index(a), parties.index(b)] = k
        return cls(parties, order, pair_index, [(parties.index(a), parties.index(b)) for a, b in order])


def lsh_links_multi(
    filters: list[np.ndarray],
    pairs: dict[tuple[int, int], float],
    params: LshParams | None = None,
    *,
    stats: BlockingStats | None = None,
    progress: Callable[[int, int], None] | None = None,
    tasks: Tasks = THREADS,
    changed: list[np.ndarray] | None = None,
) -> dict[tuple[int, int], ScoredPairs]:
    """``lsh_links`` for several party pairs in one pass over the bands.

    ``pairs`` maps (a, b), a < b, to that pair's threshold.  For each pair
    the result is identical to ``lsh_links(filters[a], filters[b],
    threshold, params)``: a bucket's rows of each party are the same whether
    the parties are sorted together or two at a time.  The work per band is
    one sort over all parties' records instead of one per pair (each party
    appears in n_parties - 1 pairs).  The slices of bands run as ``tasks``;
    ``progress(bands done, bands)`` as they finish.  In ``stats``,
    ``pairs_compared`` counts a candidate once per slice of bands that scored
    it (the work done).  With ``changed`` (a bool mask per party of
    ``filters``), each pair's result keeps only its pairs with a changed
    record (``_emit_band_multi``).
    """
    params = params or LshParams()
    plan = PassPlan.of(pairs, [len(f) for f in filters])
    parties, order, pair_index, pair_keys = plan.parties, plan.order, plan.pair_index, plan.pair_keys
    local = [filters[p] for p in parties]
    for f in local[1:]:
        check_pair(local[0], f)
    sizes = [len(f) for f in local]
    filter_bits = local[0].shape[1] * 64
    positions = band_positions(filter_bits, params.bands, params.rows, params.seed)
    counts = [popcounts(f) for f in local]
    thresholds = [check_threshold(pairs[pair]) for pair in order]
    # A few slices per worker, each de-duplicating and scoring its own
    # candidates (memory bounded by the links: see multi_slice_links).
    cuts = np.linspace(0, params.bands, min(params.bands, tasks.parts()) + 1).round().astype(int)
    slices = [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]
    flags = np.concatenate([np.asarray(changed[p], np.uint8) for p in parties]) if changed is not None \
        else np.empty(0, np.uint8)
    planes = [bit_planes(f) for f in local]
    work = tasks.run(multi_slice_links,
                     (local, planes, counts, pair_index, pair_keys, thresholds, params.max_bucket, flags),
                     [(positions[b0:b1],) for b0, b1 in slices], [b1 - b0 for b0, b1 in slices], progress)
    codes, scores = [], []
    compared = buckets = skipped = largest = 0
    for c, sc, n_scored, nb, ns, big in work:
        codes.append(c)
        scores.append(sc)
        compared += int(n_scored)
        buckets += int(nb)
        skipped += int(ns)
        largest = max(largest, int(big))
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
        stats.add(BlockingStats(
            pairs_total=sum(sizes[pa] * sizes[pb] for pa, pb in pair_keys),
            pairs_compared=compared, buckets_skipped=buckets, pairs_skipped=skipped, calls=len(order),
            largest_bucket=largest))
    return out
