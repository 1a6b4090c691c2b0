"""Band keys: the sampled bit positions, and each record's key in each band.

``band_keys`` packs each record's r sampled bits of each band into a uint32
(r <= 31).  For r over 31 the bits are hashed to a 31-bit key: the packed
sort keys of ``server.blocking.candidates`` hold 31 key bits.

The records are first transposed to bit planes (``bit_planes``: per block of
64 records, one uint64 per filter bit holding that bit of each of the 64),
once for all bands; a band's keys of a block are then its r planes
transposed back, 64 x 64 bits in six mask-and-shift steps (about 18
operations per key where extracting each sampled bit of each record took
five per bit). A caller computing many chunks of bands over the same
records passes the planes (``sampled_keys(..., planes=)``) so they are made once.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from server.blocking.tasks import parallel, thread_count
from server.matching import as_filters

_jit = {"cache": True, "nogil": True, "fastmath": False}

_EXACT_ROWS = 31  # up to this many sampled bits, the band key is the bits themselves
# Multiply-shift hash of the sampled bits to 31 bits (the packed sort key holds
# 31 key bits).  Two different bit patterns share a key with
# probability about 2^-31: over 1e12 pairs and 1000 bands that adds ~5e5
# candidates, which are scored and rejected like any other.
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)
_HASH_SHIFT = np.uint64(33)
_KEY_BLOCK = 64  # records per block of bit planes (one uint64 holds a bit of each)
_LANES = 8  # blocks transposed side by side in _keys_range (eight uint64: one AVX-512 register)
KEY_BANDS = 16  # bands per pass over the records: the rows of the keys being written stay few


def band_positions(filter_bits: int, bands: int, rows: int, seed: int = 0) -> np.ndarray:
    """``(bands, rows)`` filter bit positions, distinct within a band, from ``seed``."""
    if rows > filter_bits:
        raise ValueError(f"rows ({rows}) exceeds the filter width ({filter_bits} bits)")
    rng = np.random.default_rng([seed, filter_bits, bands, rows])
    # One independent draw without replacement per band: argsort of uniforms.
    return np.argsort(rng.random((bands, filter_bits)), axis=1)[:, :rows].astype(np.int64)


@njit(**_jit, inline="always")
def _swap_blocks(a, j, m):
    """One step of the 64 x 64 transpose: swap the off-diagonal j x j blocks of each 2j x 2j block,
    in each of the ``_LANES`` columns of ``a`` (one 64 x 64 matrix per column: the step vectorises
    across them)."""
    sj = np.uint64(j)
    for r0 in range(0, 64, 2 * j):
        for r in range(r0, r0 + j):
            for g in range(_LANES):
                t = ((a[r, g] >> sj) ^ a[r + j, g]) & m
                a[r + j, g] ^= t
                a[r, g] ^= t << sj


@njit(**_jit, inline="always")
def _transpose64(a):
    """In place, per column g: bit c of a[r, g] becomes bit r of a[c, g] (a: 64 rows of uint64)."""
    _swap_blocks(a, 32, np.uint64(0x00000000FFFFFFFF))
    _swap_blocks(a, 16, np.uint64(0x0000FFFF0000FFFF))
    _swap_blocks(a, 8, np.uint64(0x00FF00FF00FF00FF))
    _swap_blocks(a, 4, np.uint64(0x0F0F0F0F0F0F0F0F))
    _swap_blocks(a, 2, np.uint64(0x3333333333333333))
    _swap_blocks(a, 1, np.uint64(0x5555555555555555))


@njit(**_jit)
def _planes_range(filters, blk0, blk1, out):
    """out[blk, 64 w + c] = bit c (from the least significant) of word w of the block's 64 records,
    as bit k of the uint64 for record 64 blk + k (0 past the last record)."""
    n, words = filters.shape
    a = np.zeros((_KEY_BLOCK, _LANES), np.uint64)
    for blk in range(blk0, blk1):
        i0 = blk * _KEY_BLOCK
        count = min(_KEY_BLOCK, n - i0)
        for w0 in range(0, words, _LANES):  # _LANES words side by side
            lanes = min(_LANES, words - w0)
            for k in range(_KEY_BLOCK):
                for g in range(lanes):
                    a[k, g] = filters[i0 + k, w0 + g] if k < count else np.uint64(0)
            _transpose64(a)
            for g in range(lanes):
                for c in range(_KEY_BLOCK):
                    out[blk, (w0 + g) * _KEY_BLOCK + c] = a[c, g]


@njit(**_jit)
def _keys_range(planes, n, blk0, blk1, plane, out):
    """out[b, i] = key of record i in band b, for the records of blocks blk0..blk1: the band's
    planes (``plane[b, t]``: sampled bit t's) transposed back, so bit t of a key is plane t's bit;
    ``_LANES`` blocks at a time, so each step of the transpose is one vector operation across them."""
    rows = plane.shape[1]
    hashed = rows > _EXACT_ROWS
    a = np.zeros((_KEY_BLOCK, _LANES), np.uint64)
    for g0 in range(blk0, blk1, _LANES):
        lanes = min(_LANES, blk1 - g0)
        for b in range(plane.shape[0]):
            for t in range(rows):
                for g in range(lanes):
                    a[t, g] = planes[g0 + g, plane[b, t]]
            a[rows:, :] = 0
            _transpose64(a)
            for g in range(lanes):
                i0 = (g0 + g) * _KEY_BLOCK
                count = min(_KEY_BLOCK, n - i0)
                if hashed:
                    for k in range(count):
                        out[b, i0 + k] = np.uint32((a[k, g] * _HASH_MULT) >> _HASH_SHIFT)
                else:
                    for k in range(count):
                        out[b, i0 + k] = np.uint32(a[k, g])


def bit_planes(filters: np.ndarray) -> np.ndarray:
    """The records as bit planes, ``(ceil(n / 64), filter bits)`` uint64 (``_planes_range``)."""
    n, words = filters.shape
    out = np.empty(((n + _KEY_BLOCK - 1) // _KEY_BLOCK, words * 64), np.uint64)
    _planes_range(filters, 0, out.shape[0], out)
    return out


def sampled_keys(filters: np.ndarray, positions: np.ndarray, threaded: bool = True,
                 planes: np.ndarray | None = None) -> np.ndarray:
    """``(bands, n)`` uint32 keys of every record in the bands of ``positions`` (``band_keys``).

    ``threaded=False`` inside a task that is itself one of many; ``planes``:
    ``bit_planes(filters)``, when the caller keeps them for several calls.
    """
    n = filters.shape[0]
    out = np.empty((positions.shape[0], n), np.uint32)
    if n == 0:
        return out
    planes = bit_planes(filters) if planes is None else planes
    plane = (positions // 64 * 64 + 63 - positions % 64).astype(np.int64)  # MSB-first bit p's plane
    blocks = planes.shape[0]
    if not threaded:
        _keys_range(planes, n, 0, blocks, plane, out)
        return out
    step = max(1, -(-blocks // (4 * thread_count())))
    list(parallel(lambda b0: _keys_range(planes, n, b0, min(b0 + step, blocks), plane, out),
                  range(0, blocks, step)))
    return out


def band_keys(filters: np.ndarray, bands: int, rows: int, seed: int = 0) -> np.ndarray:
    """``(bands, n)`` uint32: the packed sampled bits of every record in every band.

    Bit t of ``keys[b, i]`` is filter bit ``band_positions(...)[b, t]`` of record i.
    For ``rows`` over 31 the key is a 31-bit hash of those bits instead:
    ``((bits as uint64) * 0x9E3779B97F4A7C15 mod 2^64) >> 33``.
    """
    filters = as_filters(filters, "filters")
    return sampled_keys(filters, band_positions(filters.shape[1] * 64, bands, rows, seed))
