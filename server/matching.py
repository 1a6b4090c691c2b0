"""Matching core: Dice similarity of Bloom-filter encodings, candidate links, grouping.

In the style of anonlink, a small set of pure functions:

* ``pack_filters`` / ``popcounts`` turn the departments' CLKs (``filter_bits/8``
  bytes each, ``numpy.packbits`` bit order) into a ``(n, filter_bits//64)``
  uint64 matrix and its per-row bit counts;
* ``dice_scores_above`` finds every pair of records across two sets whose Dice
  coefficient ``2|A&B| / (|A| + |B|)`` reaches a threshold, exactly;
* ``dice_scores_pairs`` scores given candidate pairs;
* ``group_records`` joins the links between up to 32 parties into persons,
  greedily, best links first, never putting two records of one party together;
* ``dice_reference`` is the plain NumPy Dice matrix the compiled code is
  checked and measured against.

The heavy loops are in the numba-compiled section below.  The comparison
kernel works on a copy of the right-hand filters cut into tiles of about
32 KiB, so a tile stays in L1 while a block of left rows is run against it;
a tile is blocks of eight columns, word by word, so one 512-bit vector holds
one word of eight columns.  Where the CPU has AVX-512 VPOPCNTQ the kernel is
LLVM IR written out on <8 x i64> vectors (``_make_and_counts``): per block of
eight pairs, per word, one AND, one VPOPCNTQ and one add, the left row's
words in registers; elsewhere plain loops (``_tile_counts_portable``), chosen
once at import.  Both sides are sorted by popcount, so the count bound
``2*min(ca, cb)/(ca + cb) >= t`` gives each left row one contiguous range of
columns, and tiles outside the ranges of a whole block are skipped.  Whether
an overlap ``c`` passes is decided against ``need[ca + cb]``, the least
passing ``c``, built with the reference's own float64 division, so the pairs
returned are exactly the reference's; the kernel compares each count with
its column's entry (``least``, filled once per run of equal popcounts) and
counts the passes, and pairs are written only for rows with passes.  Left
rows are split into chunks of about equal work on a thread pool (the
compiled functions release the GIL), as many threads as
``numba.get_num_threads()``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core import config as _numba_config
from numba.extending import intrinsic


def _compile_features() -> str:
    """The CPU features numba compiles for: NUMBA_CPU_FEATURES if set, else the host's."""
    if _numba_config.CPU_FEATURES is not None:
        return _numba_config.CPU_FEATURES
    try:
        import llvmlite.binding as llvm

        return llvm.get_host_cpu_features().flatten()
    except Exception:  # no feature detection here: assume nothing
        return ""


def _has_vector_popcount(features: str) -> bool:
    """Whether ``features`` (LLVM's "+a,-b" form) has AVX-512 with VPOPCNTQ."""
    enabled = {f[1:] for f in features.split(",") if f.startswith("+")}
    return {"avx512f", "avx512vpopcntdq"} <= enabled


def _prefer_512_bit_vectors() -> None:
    """Let LLVM use 512-bit vectors where the CPU has AVX-512 VPOPCNTQ.

    LLVM's tuning for Intel AVX-512 cores prefers 256-bit vectors, which
    halves the width of the loops it vectorises itself.  The preference is a
    property of numba's one target machine, so it is set for the process,
    before the first compilation (numba creates the target machine then); an
    explicit NUMBA_CPU_FEATURES wins.  Code compiled for other features is
    cached apart (numba keys its cache by CPU name and features).
    """
    if _numba_config.CPU_FEATURES is None and _VECTOR_POPCOUNT:
        _numba_config.CPU_FEATURES = _compile_features() + ",-prefer-256-bit"


# Chosen once, at import, from the features numba compiles for: the explicit
# 512-bit kernel (``_make_and_counts``) where they have VPOPCNTQ, the portable
# loops (``_tile_counts_portable``) elsewhere.
_VECTOR_POPCOUNT = _has_vector_popcount(_compile_features())
_prefer_512_bit_vectors()

__all__ = [
    "ScoredPairs",
    "dice_best_two",
    "dice_reference",
    "dice_scores_above",
    "dice_scores_pairs",
    "as_filters",
    "check_pair",
    "check_threshold",
    "group_records",
    "need_table",
    "pack_filters",
    "popcounts",
]

MAX_PARTIES = 32

_TILE_BYTES = 32 * 1024  # right-hand filters per tile, in blocks of eight columns
_BLOCK_ROWS = 256  # left rows run against one tile before moving to the next
_TASKS_PER_THREAD = 4  # chunks of left rows per thread, for load balance
_MIN_PAIRS_PER_TASK = 1 << 20  # below this much work a call runs on one thread

_jit = dict(cache=True, nogil=True, fastmath=False)


# --------------------------------------------------------------------------
# Data types and input handling
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredPairs:
    """Candidate links between two sets of filters (one entry per pair)."""

    left: np.ndarray  # int64 row indices into the left set
    right: np.ndarray  # int64 row indices into the right set
    score: np.ndarray  # float32 Dice coefficients

    def __post_init__(self) -> None:
        if not (len(self.left) == len(self.right) == len(self.score)):
            raise ValueError("ScoredPairs arrays must have the same length")

    def __len__(self) -> int:
        return len(self.score)

    @classmethod
    def empty(cls) -> ScoredPairs:
        """No pairs, with the dtypes of a real result."""
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))


def pack_filters(raw: Sequence[bytes] | np.ndarray, filter_bits: int) -> np.ndarray:
    """Pack CLKs into a C-contiguous ``(n, filter_bits // 64)`` uint64 array.

    ``raw`` is a sequence of ``filter_bits // 8``-byte strings (or a 2-D uint8
    array of them) in ``numpy.packbits`` order: filter bit ``k`` is bit
    ``7 - k % 8`` of byte ``k // 8``.  In the result it is bit ``63 - k % 64``
    of word ``k // 64``.
    """
    if filter_bits <= 0 or filter_bits % 64:
        raise ValueError(f"filter_bits must be a positive multiple of 64, got {filter_bits}")
    n_bytes = filter_bits // 8
    if isinstance(raw, np.ndarray) and raw.dtype == np.uint8 and raw.ndim == 2:
        if raw.shape[1] != n_bytes and raw.shape[0] > 0:
            raise ValueError(
                f"filter 0 has {raw.shape[1]} bytes, expected {n_bytes} "
                f"for {filter_bits}-bit filters"
            )
        data = np.ascontiguousarray(raw).reshape(-1, n_bytes)
    else:
        for index, item in enumerate(raw):
            if len(item) != n_bytes:
                raise ValueError(
                    f"filter {index} has {len(item)} bytes, expected {n_bytes} "
                    f"for {filter_bits}-bit filters"
                )
        data = np.frombuffer(b"".join(raw), dtype=np.uint8)
        data = data.reshape(-1, n_bytes)
    return np.ascontiguousarray(data.view(">u8"), dtype=np.uint64)


def popcounts(filters: np.ndarray) -> np.ndarray:
    """Number of set bits of each packed filter, ``(n,)`` int32."""
    filters = as_filters(filters, "filters")
    return np.bitwise_count(filters).sum(axis=1, dtype=np.int32)


def as_filters(filters: np.ndarray, name: str) -> np.ndarray:
    """``filters`` as a C-contiguous 2-D uint64 array; ValueError naming ``name`` otherwise."""
    filters = np.asarray(filters)
    if filters.dtype != np.uint64 or filters.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D uint64 array from pack_filters, "
            f"got {filters.dtype} with shape {filters.shape}"
        )
    return np.ascontiguousarray(filters)


def check_pair(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sides as packed filters (``as_filters``) of one width; ValueError otherwise."""
    left = as_filters(left, "left")
    right = as_filters(right, "right")
    if left.shape[1] != right.shape[1]:
        raise ValueError(
            f"filter widths differ: {left.shape[1] * 64} and {right.shape[1] * 64} bits"
        )
    return left, right


def _as_counts(counts, filters: np.ndarray, name: str) -> np.ndarray:
    if counts is None:
        return popcounts(filters)
    counts = np.asarray(counts)
    if counts.shape != (filters.shape[0],):
        raise ValueError(f"{name} must have shape ({filters.shape[0]},), got {counts.shape}")
    if counts.size and (counts.min() < 0 or counts.max() > filters.shape[1] * 64):
        raise ValueError(f"{name} out of range for {filters.shape[1] * 64}-bit filters")
    return counts.astype(np.int32, copy=False)


# --------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------


def dice_reference(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Full ``(n, m)`` float64 Dice matrix with plain NumPy (tests, baseline).

    Dice is ``2 * |A & B| / (|A| + |B|)``, and 0 where both filters are empty.
    Blocks of left rows against all right rows, one word at a time.
    """
    left, right = check_pair(left, right)
    n, m = left.shape[0], right.shape[0]
    right_words = np.ascontiguousarray(right.T)  # (n_words, m)
    inter = np.empty((n, m), np.float64)
    rows = 64
    anded = np.empty((rows, m), np.uint64)
    for i in range(0, n, rows):
        block = left[i : i + rows]
        counts = np.zeros((len(block), m), np.uint16)
        for w in range(left.shape[1]):
            np.bitwise_and(block[:, w, None], right_words[w], out=anded[: len(block)])
            counts += np.bitwise_count(anded[: len(block)])
        inter[i : i + rows] = counts
    total = popcounts(left)[:, None].astype(np.float64) + popcounts(right)[None, :]
    out = np.zeros((n, m), np.float64)
    np.divide(2.0 * inter, total, out=out, where=total > 0)
    return out


# --------------------------------------------------------------------------
# Compiled kernels
# --------------------------------------------------------------------------


@intrinsic
def _popcount64(typingctx, word):
    """Bit count of a uint64 as int64 (LLVM ctpop: POPCNT / VPOPCNTQ)."""
    if word != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.int64(types.uint64), codegen


_V8 = ir.VectorType(ir.IntType(64), 8)  # eight tile columns of one filter word: one zmm register
_I64 = ir.IntType(64)


def _splat(builder, word):
    """<8 x i64> with every lane ``word`` (VPBROADCASTQ)."""
    one = builder.insert_element(ir.Constant(_V8, ir.Undefined), word, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(_V8, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8))


def _tree_sum(builder, terms):
    """Sum of the vectors pairwise, so no add waits on a long chain."""
    while len(terms) > 1:
        terms = [builder.add(*terms[k : k + 2]) if k + 1 < len(terms) else terms[k] for k in range(0, len(terms), 2)]
    return terms[0]


def _make_and_counts(words: int, accumulate: bool, test: bool):
    """A compiled ``f(left, i, w0, blocks, k0, k1, out, least) -> hits``: for each block
    k0 <= k < k1 of eight tile columns, ``out[8k:8k+8] (+)= sum over w0 <= w < w0 + words
    of popcount(left[i, w] & blocks[k, w])``; with ``test``, ``hits`` is the number
    of those columns j with ``out[j] >= least[j]`` (else 0, and ``least`` is not read).

    Written as LLVM IR on explicit <8 x i64> vectors, so the loop is exactly
    what bench/kernel.py counts: per block, one VPANDQ (memory operand), one
    VPOPCNTQ and one VPADDQ per word, one store, and with ``test`` one
    compare whose mask is counted in a scalar register (KMOVB, POPCNT: one
    op on the vector ports).  The row's words stay in registers (16 at most,
    beside the temporaries in the 32 zmm registers), and every block address
    is a constant offset from one pointer (numba's own indexing of a
    word-major tile needed a register per word, and spilled).  Two rows per
    pass, sharing each block's loads, timed no faster (docs/scale.md).
    No bounds checks: the callers keep k1 <= len(blocks), 8*k1 <= len(out),
    len(least) and w0 + words <= left.shape[1].
    """

    def is_array(x, dtype, ndim):
        return isinstance(x, types.Array) and x.dtype == dtype and x.ndim == ndim and x.layout == "C"

    @intrinsic
    def and_counts(typingctx, left, i, w0, blocks, k0, k1, out, least):
        if not (is_array(left, types.uint64, 2) and is_array(blocks, types.uint64, 3)
                and is_array(out, types.int64, 1) and is_array(least, types.int64, 1)
                and all(isinstance(x, types.Integer) for x in (i, w0, k0, k1))):
            return None

        def codegen(context, builder, signature, args):
            left_arr, blocks_arr, out_arr, least_arr = (
                context.make_array(signature.args[n])(context, builder, args[n]) for n in (0, 3, 6, 7)
            )
            i_, w0_, k0_, k1_ = (context.cast(builder, args[n], signature.args[n], types.int64) for n in (1, 2, 4, 5))
            row = builder.gep(left_arr.data, [builder.add(builder.mul(i_, builder.extract_value(left_arr.shape, 1)), w0_)])
            row_words = [_splat(builder, builder.load(builder.gep(row, [ir.Constant(_I64, w)]))) for w in range(words)]
            n_words = builder.extract_value(blocks_arr.shape, 1)
            ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8, [_V8]), "llvm.ctpop.v8i64")
            columns = builder.gep(builder.bitcast(blocks_arr.data, _V8.as_pointer()), [w0_])
            counts = builder.bitcast(out_arr.data, _V8.as_pointer())
            bounds = builder.bitcast(least_arr.data, _V8.as_pointer())
            hits = cgutils.alloca_once_value(builder, ir.Constant(_I64, 0))
            with cgutils.for_range_slice(builder, k0_, k1_, ir.Constant(_I64, 1)) as (k, _):
                block = builder.gep(columns, [builder.mul(k, n_words)])
                terms = [
                    builder.call(ctpop, [builder.and_(builder.load(builder.gep(block, [ir.Constant(_I64, w)]), align=8),
                                                      row_words[w])])
                    for w in range(words)
                ]
                target = builder.gep(counts, [k])
                if accumulate:
                    terms.append(builder.load(target, align=8))
                total = _tree_sum(builder, terms)
                builder.store(total, target, align=8)
                if test:
                    passes = builder.icmp_signed(">=", total, builder.load(builder.gep(bounds, [k]), align=8))
                    mask = builder.zext(builder.bitcast(passes, ir.IntType(8)), _I64)
                    builder.store(builder.add(builder.load(hits), builder.ctpop(mask)), hits)
            return builder.load(hits)

        return types.int64(left, i, w0, blocks, k0, k1, out, least), codegen

    return and_counts


_and_counts16 = _make_and_counts(16, accumulate=False, test=False)
_and_counts16_test = _make_and_counts(16, accumulate=False, test=True)
_and_counts8 = _make_and_counts(8, accumulate=False, test=False)
_and_counts8_test = _make_and_counts(8, accumulate=False, test=True)
_and_counts8_add = _make_and_counts(8, accumulate=True, test=False)
_and_counts8_add_test = _make_and_counts(8, accumulate=True, test=True)


@njit(**_jit)
def _tile_counts_words8(left, i, tile, k0, k1, out, least, test):
    """``_tile_counts`` of one row on 512-bit vectors, eight words at a time."""
    last = left.shape[1] - 8
    if last == 0:
        if test:
            return _and_counts8_test(left, i, 0, tile, k0, k1, out, least)
        return _and_counts8(left, i, 0, tile, k0, k1, out, least)
    _and_counts8(left, i, 0, tile, k0, k1, out, least)
    for w0 in range(8, last, 8):
        _and_counts8_add(left, i, w0, tile, k0, k1, out, least)
    if test:
        return _and_counts8_add_test(left, i, last, tile, k0, k1, out, least)
    return _and_counts8_add(left, i, last, tile, k0, k1, out, least)


@njit(**_jit)
def _tile_counts_portable(left, i, tile, k0, k1, out, least, test):
    """``_tile_counts`` of one row in plain loops, for any CPU and filter width
    (LLVM vectorises the eight lanes as far as the CPU allows).

    Indices are unsigned: numba wraps negative indices, and for a start LLVM
    cannot prove non-negative the wrap turns every load into a gather.
    """
    a = left[i]
    hits = 0
    for k in range(np.uint64(k0), np.uint64(k1)):
        block = tile[k]
        for lane in range(8):
            out[8 * k + lane] = 0
        for w in range(a.shape[0]):
            aw = a[w]
            for lane in range(8):
                out[8 * k + lane] += _popcount64(aw & block[w, lane])
        if test:
            for lane in range(8):
                hits += out[8 * k + lane] >= least[8 * k + lane]
    return hits


@njit(inline="always", **_jit)
def _tile_counts(left, i, tile, k0, k1, out, least, test):
    """out[j] = popcount(left[i] & tile column j) for the columns of blocks k0 <= k < k1.

    ``tile`` is ``(width // 8, n_words, 8)``: blocks of eight columns, word
    by word, so one vector holds one word of eight columns.  With ``test``,
    returns the number of those columns with out[j] >= least[j]; else 0.
    """
    if _VECTOR_POPCOUNT and left.shape[1] == 16:  # 1024-bit filters, the default: one pass
        if test:
            return _and_counts16_test(left, i, 0, tile, k0, k1, out, least)
        return _and_counts16(left, i, 0, tile, k0, k1, out, least)
    if _VECTOR_POPCOUNT and left.shape[1] % 8 == 0:
        return _tile_counts_words8(left, i, tile, k0, k1, out, least, test)
    return _tile_counts_portable(left, i, tile, k0, k1, out, least, test)


@njit(inline="always", **_jit)
def _aligned_empty(n):
    """An int64 array of n on a 64-byte boundary (numba aligns to 32), so the kernel's
    512-bit loads and stores of it never split a cache line."""
    buffer = np.empty(n + 8, np.int64)
    start = (-buffer.ctypes.data % 64) // 8
    return buffer[start : start + n]


@njit(inline="always", **_jit)
def _fill_least(least, need, ca, counts, run_end, j0, j1, impossible):
    """least[j] = need[ca + counts[j]] for j0 <= j < j1, one need[] lookup per run of
    equal popcounts; ``impossible`` in the rest of their blocks of eight columns."""
    for j in range(np.uint64(j0 // 8 * 8), np.uint64(j0)):
        least[j] = impossible
    j = j0
    while j < j1:
        end = min(run_end[j], j1)
        value = need[ca + counts[j]]
        for jj in range(np.uint64(j), np.uint64(end)):
            least[jj] = value
        j = end
    for j in range(np.uint64(j1), np.uint64((j1 + 7) // 8 * 8)):
        least[j] = impossible


@njit(inline="always", **_jit)
def _write_hits(li, rj, score, size, out, least, counts, ca, j0, j1, i, base):
    """Write the pairs (i, base + j) with out[j] >= least[j], j0 <= j < j1, from size on."""
    for j in range(j0, j1):
        if out[j] >= least[j]:
            li[size] = i
            rj[size] = base + j
            score[size] = _dice(out[j], ca + counts[j])
            size += 1
    return size


@njit(**_jit)
def _scan_block(
    left, left_counts, col_lo, col_hi, right, need, b0, b1, collect, li, rj, score, size
):
    """Compare sorted left rows b0 <= i < b1 with the right columns they may match
    (``_scan_rows``, with the default width's kernel alone in the loop where it applies).
    """
    if _VECTOR_POPCOUNT and left.shape[1] == 16:
        return _scan_rows(True, left, left_counts, col_lo, col_hi, right, need, b0, b1, collect, li, rj, score, size)
    return _scan_rows(False, left, left_counts, col_lo, col_hi, right, need, b0, b1, collect, li, rj, score, size)


@njit(inline="always", **_jit)
def _scan_rows(
    words16, left, left_counts, col_lo, col_hi, right, need, b0, b1, collect, li, rj, score, size
):
    """Compare sorted left rows b0 <= i < b1 with the right columns they may match.

    ``words16`` (a constant where inlined) puts the 1024-bit kernel alone in
    the loop: with the other widths' paths beside it, even untaken, the loop
    ran 6% slower (registers saved around their calls).

    ``size`` counts the passing pairs found so far; the new count is returned.
    With ``collect``, the pairs also go into li/rj/score from index ``size`` on,
    and -1 is returned as soon as they might not fit (grow, then run the block
    again).  The arrays are never replaced in here: numba's reference counting
    of arrays reassigned in a loop costs a third of the speed.

    The kernel tests each count against least[j], the least passing overlap
    of its column; a row's least[] is refilled only when its popcount or
    column range differs from the row before (rows are sorted by popcount,
    so most reuse it), and pairs are written only for rows with hits.
    """
    tiles, tile_counts, run_end = right
    width = tiles.shape[1] * 8
    impossible = need.shape[0]  # larger than any overlap
    lo = col_lo[b0:b1].min()
    hi = col_hi[b0:b1].max()
    if lo >= hi:
        return size
    out = _aligned_empty(width)
    least = _aligned_empty(width)
    for t in range(lo // width, (hi - 1) // width + 1):
        base = t * width
        # Views taken once per tile: each costs numba a reference count in and out.
        tile, counts, ends = tiles[t], tile_counts[t], run_end[t]
        filled = (-1, -1, -1)  # (ca, j0, j1) least[] holds
        for i in range(b0, b1):
            j0 = max(col_lo[i], base) - base
            j1 = min(col_hi[i], base + width) - base
            if j0 >= j1:
                continue
            if collect and size + (j1 - j0) > li.shape[0]:
                return -1
            ca = left_counts[i]
            if filled != (ca, j0, j1):
                _fill_least(least, need, ca, counts, ends, j0, j1, impossible)
                filled = (ca, j0, j1)
            if words16:
                hits = _and_counts16_test(left, i, 0, tile, j0 // 8, (j1 + 7) // 8, out, least)
            else:
                hits = _tile_counts(left, i, tile, j0 // 8, (j1 + 7) // 8, out, least, True)
            if collect and hits:
                size = _write_hits(li, rj, score, size, out, least, counts, ca, j0, j1, i, base)
            else:
                size += hits
    return size


@njit(**_jit)
def _count_chunk(left, left_counts, col_lo, col_hi, right, need, r0, r1):
    """Number of passing pairs for sorted left rows r0 <= i < r1."""
    no_ints = np.empty(0, np.int64)
    no_scores = np.empty(0, np.float32)
    hits = 0
    for b0 in range(r0, r1, _BLOCK_ROWS):
        b1 = min(b0 + _BLOCK_ROWS, r1)
        hits = _scan_block(
            left, left_counts, col_lo, col_hi, right, need, b0, b1,
            False, no_ints, no_ints, no_scores, hits,
        )
    return hits


@njit(**_jit)
def _collect_chunk(left, left_counts, col_lo, col_hi, right, need, r0, r1):
    """Passing pairs (sorted left row, sorted right row, Dice) for rows r0..r1."""
    capacity = 4 * right[0].shape[1] * 8
    li = np.empty(capacity, np.int64)
    rj = np.empty(capacity, np.int64)
    score = np.empty(capacity, np.float32)
    size = 0
    for b0 in range(r0, r1, _BLOCK_ROWS):
        b1 = min(b0 + _BLOCK_ROWS, r1)
        while True:
            found = _scan_block(
                left, left_counts, col_lo, col_hi, right, need, b0, b1,
                True, li, rj, score, size,
            )
            if found >= 0:
                break
            li = _grow(li)
            rj = _grow(rj)
            score = _grow(score)
        size = found
    return li[:size], rj[:size], score[:size]


@njit(**_jit)
def _bucket_positions(keys, n_keys):
    """Where each element goes in a stable counting sort by ``keys``."""
    start = np.zeros(n_keys + 1, np.int64)
    for k in range(keys.shape[0]):
        start[keys[k] + 1] += 1
    for key in range(n_keys):
        start[key + 1] += start[key]
    dest = np.empty(keys.shape[0], np.int64)
    for k in range(keys.shape[0]):
        dest[k] = start[keys[k]]
        start[keys[k]] += 1
    return dest


@njit(**_jit)
def _original_order(li, rj, score, left_order, right_order):
    """Map sorted-side indices back and order the pairs by (left, right).

    Two stable counting sorts, by right then by left index: linear in the
    number of pairs, where np.lexsort costs five times the kernel.
    """
    right = right_order[rj]
    dest = _bucket_positions(right, right_order.shape[0])
    left1 = np.empty_like(li)
    right1 = np.empty_like(rj)
    score1 = np.empty_like(score)
    left1[dest] = left_order[li]
    right1[dest] = right
    score1[dest] = score
    dest = _bucket_positions(left1, left_order.shape[0])
    left = np.empty_like(li)
    score2 = np.empty_like(score)
    left[dest] = left1
    right[dest] = right1
    score2[dest] = score1
    return left, right, score2


@njit(inline="always", **_jit)
def _dice(inter, total):
    """Dice from overlap and |A|+|B|, as float32 of the float64 quotient."""
    if total == 0:
        return np.float32(0.0)
    return np.float32(2.0 * inter / total)


@njit(**_jit)
def _grow(a):
    b = np.empty(2 * a.shape[0], a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(**_jit)
def _pair_scores(left, right, li, rj):
    out = np.empty(li.shape[0], np.float32)
    for k in range(li.shape[0]):
        a = left[li[k]]
        b = right[rj[k]]
        inter = 0
        total = 0
        for w in range(a.shape[0]):
            inter += _popcount64(a[w] & b[w])
            total += _popcount64(a[w]) + _popcount64(b[w])
        out[k] = _dice(inter, total)
    return out


# --------------------------------------------------------------------------
# Similarity
# --------------------------------------------------------------------------


def need_table(threshold: float, filter_bits: int) -> np.ndarray:
    """need[s]: least |A&B| whose Dice reaches ``threshold`` when |A|+|B| = s.

    Uses the reference's own float64 expression ``2.0 * c / s``, so a count
    passes here exactly when the reference's score passes.  Where nothing
    can pass, the entry is larger than any count.
    """
    impossible = filter_bits + 1
    s = np.arange(2 * filter_bits + 1, dtype=np.int64)
    need = np.full(s.shape, impossible, np.int64)
    if threshold <= 0.0:
        need[:] = 0
        return need
    positive = s[1:]
    top = positive // 2  # the overlap can be at most min(ca, cb) <= s / 2
    estimate = np.ceil(min(threshold, 1.0) * positive / 2.0)
    c = np.clip(estimate, 0, top).astype(np.int64)
    # The estimate can be off by one either way through rounding; settle it
    # with the exact test.  Dice is non-decreasing in c for a fixed s.
    while (down := (c > 0) & (2.0 * (c - 1) / positive >= threshold)).any():
        c[down] -= 1
    while (up := (c < top) & (2.0 * c / positive < threshold)).any():
        c[up] += 1
    passes = 2.0 * c / positive >= threshold
    need[1:] = np.where(passes, c, impossible)
    return need


@njit(**_jit)
def _count_bounds(need, ca):
    """For each popcount in ``ca``, the range [lo, hi] of cb that can reach the threshold.

    A pair can pass only if its largest possible overlap, min(ca, cb), does.
    That set of cb is an interval around ca: 2*cb/(ca+cb) rises with cb below
    ca and 2*ca/(ca+cb) falls with cb above it.  lo and hi are the first and
    last passing cb, found from either end; empty ranges get lo > hi.
    """
    filter_bits = (need.shape[0] - 1) // 2
    lo = np.full(ca.shape[0], filter_bits + 1, np.int64)
    hi = np.full(ca.shape[0], -1, np.int64)
    for k in range(ca.shape[0]):
        a = ca[k]
        for cb in range(filter_bits + 1):
            if min(a, cb) >= need[a + cb]:
                lo[k] = cb
                break
        for cb in range(filter_bits, lo[k] - 1, -1):
            if min(a, cb) >= need[a + cb]:
                hi[k] = cb
                break
    return lo, hi


def _aligned_zeros(shape: tuple[int, ...], dtype) -> np.ndarray:
    """Zeros on a 64-byte boundary, so no 512-bit load of a tile splits a cache line."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.zeros(size + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + size].view(dtype).reshape(shape)


@njit(**_jit)
def _fill_blocks(blocks, filters):
    """blocks[j // 8, w, j % 8] = filters[j, w] (numpy's strided copy of the transpose took 4x longer)."""
    for j in range(filters.shape[0]):
        for w in range(filters.shape[1]):
            blocks[j // 8, w, j % 8] = filters[j, w]


def _tiles(right_sorted: np.ndarray, counts_sorted: np.ndarray):
    """The right-hand filters, sorted by popcount, in tiles of blocks of eight columns.

    Returns ``(tiles, counts, run_end)``: tiles ``(n_tiles, width // 8,
    n_words, 8)`` of about ``_TILE_BYTES`` each, where ``tiles[t, k, w, l]``
    is word w of tile column 8k + l; the popcount of each tile column; and
    for each column the tile-local end of its run of equal popcounts.
    """
    m, n_words = right_sorted.shape
    width = max(8, (_TILE_BYTES // (8 * n_words)) // 8 * 8)
    n_tiles = max(1, -(-m // width))
    tiles = _aligned_zeros((n_tiles, width // 8, n_words, 8), np.uint64)
    _fill_blocks(tiles.reshape(-1, n_words, 8), right_sorted)  # a view: blocks of eight columns in order
    counts = np.zeros(n_tiles * width, np.int64)
    counts[:m] = counts_sorted
    run_end = np.full(n_tiles * width, width, np.int64)
    column = np.arange(m)
    run_end[:m] = np.minimum(
        np.searchsorted(counts_sorted, counts_sorted, side="right") - column // width * width,
        width,
    )
    return tiles, counts.reshape(n_tiles, width), run_end.reshape(n_tiles, width)


def _popcount_order(counts: np.ndarray, filter_bits: int) -> np.ndarray:
    """``np.argsort(counts, kind="stable")`` by a counting sort: popcounts are small integers."""
    order = np.empty(len(counts), np.int64)
    order[_bucket_positions(counts, filter_bits + 1)] = np.arange(len(counts))
    return order


def _run_chunks(kernel, left, right, threshold, left_counts, right_counts):
    """Sort, tile, split the left rows into chunks and run ``kernel`` on each.

    Returns the kernel's results in chunk order, with the sort orders.
    """
    filter_bits = left.shape[1] * 64
    need = need_table(threshold, filter_bits)

    left_order = _popcount_order(left_counts, filter_bits)
    right_order = _popcount_order(right_counts, filter_bits)
    left_sorted = left[left_order]
    ca = left_counts[left_order].astype(np.int64)
    cb = right_counts[right_order].astype(np.int64)
    # Columns of the sorted right side each sorted left row can match.
    ca_values, ca_index = np.unique(ca, return_inverse=True)
    cb_lo, cb_hi = _count_bounds(need, ca_values)
    col_lo = np.searchsorted(cb, cb_lo, side="left")[ca_index]
    col_hi = np.searchsorted(cb, cb_hi, side="right")[ca_index]
    col_hi = np.maximum(col_hi, col_lo)
    tiled_right = _tiles(right[right_order], cb)

    # Chunks of about equal work, a few per thread.
    work = np.cumsum(col_hi - col_lo)
    total = int(work[-1]) if len(work) else 0
    threads = max(1, numba.get_num_threads())
    n_chunks = min(threads * _TASKS_PER_THREAD, max(1, total // _MIN_PAIRS_PER_TASK))
    if threads == 1:
        n_chunks = 1
    targets = total * np.arange(1, n_chunks) / n_chunks
    cuts = np.concatenate(([0], np.searchsorted(work, targets), [len(ca)]))

    args = (left_sorted, ca, col_lo, col_hi, tiled_right, need)
    ranges = [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    if len(ranges) <= 1:
        results = [kernel(*args, r0, r1) for r0, r1 in ranges]
    else:
        with ThreadPoolExecutor(max_workers=min(threads, len(ranges))) as pool:
            results = list(pool.map(lambda r: kernel(*args, r[0], r[1]), ranges))
    return results, left_order, right_order


def check_threshold(threshold: float) -> float:
    """The threshold as a float; ValueError for NaN (every comparison with NaN is false)."""
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    return threshold


def dice_scores_above(
    left: np.ndarray,
    right: np.ndarray,
    threshold: float,
    *,
    left_counts=None,
    right_counts=None,
) -> ScoredPairs:
    """All pairs (i, j) with Dice(left[i], right[j]) >= threshold, exactly.

    ``left`` and ``right`` come from ``pack_filters``; their popcounts may be
    passed in when already known.  Scores are the float64 Dice rounded to
    float32, and pairs come ordered by (left, right).
    """
    left, right = check_pair(left, right)
    threshold = check_threshold(threshold)
    left_counts = _as_counts(left_counts, left, "left_counts")
    right_counts = _as_counts(right_counts, right, "right_counts")
    if left.shape[0] == 0 or right.shape[0] == 0:
        return ScoredPairs.empty()
    results, left_order, right_order = _run_chunks(
        _collect_chunk, left, right, threshold, left_counts, right_counts
    )
    if not results:
        return ScoredPairs.empty()
    li, rj, score = (np.concatenate(column) for column in zip(*results))
    return ScoredPairs(*_original_order(li, rj, score, left_order, right_order))


def _dice_count_above(left: np.ndarray, right: np.ndarray, threshold: float) -> int:
    """Number of pairs dice_scores_above would return, without building them.

    Runs the same kernel; the benchmark uses it to time comparisons alone.
    """
    left, right = check_pair(left, right)
    threshold = check_threshold(threshold)
    if left.shape[0] == 0 or right.shape[0] == 0:
        return 0
    results, _, _ = _run_chunks(
        _count_chunk, left, right, threshold, popcounts(left), popcounts(right)
    )
    return int(sum(results))


def dice_scores_pairs(
    left: np.ndarray, right: np.ndarray, li: np.ndarray, rj: np.ndarray
) -> np.ndarray:
    """Dice of (left[li[k]], right[rj[k]]) for each k, float32."""
    left, right = check_pair(left, right)
    li = np.asarray(li, dtype=np.int64)
    rj = np.asarray(rj, dtype=np.int64)
    if li.shape != rj.shape or li.ndim != 1:
        raise ValueError("li and rj must be 1-D and of the same length")
    for name, idx, n in (("li", li, left.shape[0]), ("rj", rj, right.shape[0])):
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"{name} out of range for {n} filters")
    return _pair_scores(left, right, li, rj)


# --------------------------------------------------------------------------
# Grouping
# --------------------------------------------------------------------------


@njit(**_jit)
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while x != root:  # path compression
        up = parent[x]
        parent[x] = root
        x = up
    return root


@njit(**_jit)
def _greedy_groups(n_records, party, a_rec, b_rec):
    """Union-find over records, links taken in the given order.

    Two groups are merged only when no party has a record in both.
    Labels are numbered by each group's smallest record index.
    """
    parent = np.arange(n_records)
    mask = np.empty(n_records, np.int64)
    for r in range(n_records):
        mask[r] = np.int64(1) << party[r]
    for k in range(a_rec.shape[0]):
        ra = _find(parent, a_rec[k])
        rb = _find(parent, b_rec[k])
        if ra == rb or (mask[ra] & mask[rb]) != 0:
            continue
        if rb < ra:
            ra, rb = rb, ra
        parent[rb] = ra
        mask[ra] |= mask[rb]
    labels = np.empty(n_records, np.int64)
    label_of_root = np.full(n_records, -1, np.int64)
    next_label = 0
    for r in range(n_records):
        root = _find(parent, r)
        if label_of_root[root] < 0:
            label_of_root[root] = next_label
            next_label += 1
        labels[r] = label_of_root[root]
    return labels


def _link_table(sizes: list[int], pairs: Mapping[tuple[int, int], ScoredPairs]):
    """All links as columns (score, a, b, left, right), checked against the parties."""
    n_parties = len(sizes)
    columns: list[tuple[np.ndarray, ...]] = []
    for key, links in pairs.items():
        a, b = (int(p) for p in key)
        if not 0 <= a < b < n_parties:
            raise ValueError(f"pair key {key} must be (a, b) with 0 <= a < b < {n_parties}")
        left = np.asarray(links.left, dtype=np.int64)
        right = np.asarray(links.right, dtype=np.int64)
        score = np.asarray(links.score, dtype=np.float64)
        if left.size and (left.min() < 0 or left.max() >= sizes[a]):
            raise IndexError(f"pairs[{key}].left out of range for party {a}'s {sizes[a]} records")
        if right.size and (right.min() < 0 or right.max() >= sizes[b]):
            raise IndexError(f"pairs[{key}].right out of range for party {b}'s {sizes[b]} records")
        if np.isnan(score).any():
            raise ValueError(f"pairs[{key}] has NaN scores")
        columns.append((score, np.full_like(left, a), np.full_like(left, b), left, right))
    if not columns:
        return (np.empty(0),) + (np.empty(0, np.int64),) * 4
    return tuple(np.concatenate(column) for column in zip(*columns))


def group_records(
    n_per_party: Sequence[int], pairs: Mapping[tuple[int, int], ScoredPairs]
) -> np.ndarray:
    """Group the records of all parties into persons from scored links.

    ``pairs[(a, b)]``, ``a < b``, links party a's records (``left``) to party
    b's (``right``).  Links are taken best first (ties by a, b, left, right);
    a link joins two groups only if they have no party in common, so a group
    never holds two records of one party.  Returns one label per record of
    the concatenated parties (party 0 first), numbered 0..G-1 in order of
    each group's first record; unlinked records are groups of their own.
    """
    sizes = [int(n) for n in n_per_party]
    if len(sizes) > MAX_PARTIES:
        raise ValueError(f"at most {MAX_PARTIES} parties, got {len(sizes)}")
    if any(n < 0 for n in sizes):
        raise ValueError("party sizes must be non-negative")
    offsets = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
    party = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)

    score, a, b, left, right = _link_table(sizes, pairs)
    order = np.lexsort((right, left, b, a, -score))  # last key sorts first
    a_rec = (offsets[a] + left)[order]
    b_rec = (offsets[b] + right)[order]
    return _greedy_groups(int(offsets[-1]), party, a_rec, b_rec)


# --------------------------------------------------------------------------
# Best two matches per row
# --------------------------------------------------------------------------


@njit(inline="always", **_jit)
def _top_two(out, j0, j1):
    """The two largest of out[j0:j1] and where they are (-1 where there are fewer)."""
    c1 = -1
    c2 = -1
    at1 = -1
    at2 = -1
    for j in range(np.uint64(j0), np.uint64(j1)):
        c = out[j]
        if c > c2:
            if c > c1:
                c2, at2 = c1, at1
                c1, at1 = c, np.int64(j)
            else:
                c2, at2 = c, np.int64(j)
    return c1, at1, c2, at2


@njit(inline="always", **_jit)
def _keep_two(s, at, b1, a1, b2, a2):
    """Insert score s of column ``at`` into the running best two (b1 >= b2) and their columns."""
    if s > b1:
        return s, at, b1, a1
    if s > b2:
        return b1, a1, s, at
    return b1, a1, b2, a2


@njit(**_jit)
def _best_two_chunk(left, left_counts, col_lo, col_hi, right, need, r0, r1):
    """Best and second-best passing Dice (float32 as float64; -1: none) of sorted left rows r0..r1,
    and their columns of the sorted right side (-1: none).

    The same tiles and count ranges as ``_scan_block``; within a run of equal
    popcounts Dice rises with the overlap, so a run's two largest overlaps
    are the only candidates.
    """
    tiles, tile_counts, run_end = right
    width = tiles.shape[1] * 8
    best = np.full(r1 - r0, -1.0)
    second = np.full(r1 - r0, -1.0)
    best_at = np.full(r1 - r0, -1, np.int64)
    second_at = np.full(r1 - r0, -1, np.int64)
    out = _aligned_empty(width)
    for b0 in range(r0, r1, _BLOCK_ROWS):
        b_end = min(b0 + _BLOCK_ROWS, r1)
        lo = col_lo[b0:b_end].min()
        hi = col_hi[b0:b_end].max()
        if lo >= hi:
            continue
        for t in range(lo // width, (hi - 1) // width + 1):
            base = t * width
            for i in range(b0, b_end):
                j0 = max(col_lo[i], base) - base
                j1 = min(col_hi[i], base + width) - base
                if j0 >= j1:
                    continue
                _tile_counts(left, i, tiles[t], j0 // 8, (j1 + 7) // 8, out, out, False)
                ca = left_counts[i]
                s1, a1 = best[i - r0], best_at[i - r0]
                s2, a2 = second[i - r0], second_at[i - r0]
                j = j0
                while j < j1:
                    end = min(run_end[t, j], j1)
                    total = ca + tile_counts[t, j]
                    least = need[total]
                    c1, at1, c2, at2 = _top_two(out, j, end)
                    if c1 >= least:
                        s1, a1, s2, a2 = _keep_two(np.float64(_dice(c1, total)), base + at1, s1, a1, s2, a2)
                        if c2 >= least:
                            s1, a1, s2, a2 = _keep_two(np.float64(_dice(c2, total)), base + at2, s1, a1, s2, a2)
                    j = end
                best[i - r0], best_at[i - r0] = s1, a1
                second[i - r0], second_at[i - r0] = s2, a2
    return best, second, best_at, second_at


def dice_best_two(left: np.ndarray, right: np.ndarray, threshold: float) -> tuple[np.ndarray, ...]:
    """For each left row, its best and second-best Dice among the right rows at or above ``threshold``,
    and the right rows that have them.

    The same values as taking ``dice_scores_above(left, right, threshold)``
    and keeping each row's two highest scores (float32 scores as float64;
    -1 where a row has fewer than one or two, and then row -1), without
    building the pairs: at a low threshold on 0.5-fill filters a tenth of
    all pairs pass, which for 2,000 rows against a million is 2e8 pairs.
    Of tied right rows, which one is named is unspecified (an incremental
    run needs only that it scores so: server/pipeline/profiles.py).  Runs
    on the comparison kernel's tiles and threads.
    """
    left, right = check_pair(left, right)
    threshold = check_threshold(threshold)
    n = left.shape[0]
    best, second = np.full(n, -1.0), np.full(n, -1.0)
    best_row, second_row = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    if n == 0 or right.shape[0] == 0:
        return best, second, best_row, second_row
    results, left_order, right_order = _run_chunks(_best_two_chunk, left, right, threshold, popcounts(left),
                                                   popcounts(right))
    if results:
        best[left_order] = np.concatenate([r[0] for r in results])
        second[left_order] = np.concatenate([r[1] for r in results])
        # Sorted columns back to the caller's right rows.
        for out, k in ((best_row, 2), (second_row, 3)):
            at = np.concatenate([r[k] for r in results])
            out[left_order] = np.where(at >= 0, right_order[np.maximum(at, 0)], -1)
    return best, second, best_row, second_row
