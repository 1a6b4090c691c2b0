"""Band keys: the sampled bit positions, and each record's key in each band.

``band_keys`` packs each record's r sampled bits of each band into a uint32
(r <= 31), vectorised across records (blocks of 64 records transposed to
word-major).  For r over 31 the bits are hashed to a 31-bit key: the packed
sort keys of ``server.blocking.candidates`` hold 31 key bits.
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
_KEY_BLOCK = 64  # records per vectorised block in band_keys
KEY_BANDS = 16  # bands per pass over the records: the rows of the keys being written stay few


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
    for b0 in range(0, word.shape[0], KEY_BANDS):
        b1 = min(b0 + KEY_BANDS, word.shape[0])
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


def sampled_keys(filters: np.ndarray, positions: np.ndarray, threaded: bool = True) -> np.ndarray:
    """``(bands, n)`` uint32 keys of every record in the bands of ``positions`` (``band_keys``).

    ``threaded=False`` inside a task that is itself one of many.
    """
    n = filters.shape[0]
    word = positions // 64
    shift = (63 - positions % 64).astype(np.uint64)
    out = np.empty((positions.shape[0], n), np.uint32)
    if n == 0:
        return out
    if not threaded:
        _keys_range(filters, 0, n, word, shift, out)
        return out
    step = max(_KEY_BLOCK, -(-n // (4 * thread_count())) // _KEY_BLOCK * _KEY_BLOCK)
    list(parallel(lambda r: _keys_range(filters, r, min(r + step, n), word, shift, out), range(0, n, step)))
    return out


def band_keys(filters: np.ndarray, bands: int, rows: int, seed: int = 0) -> np.ndarray:
    """``(bands, n)`` uint32: the packed sampled bits of every record in every band.

    Bit t of ``keys[b, i]`` is filter bit ``band_positions(...)[b, t]`` of record i.
    For ``rows`` over 31 the key is a 31-bit hash of those bits instead:
    ``((bits as uint64) * 0x9E3779B97F4A7C15 mod 2^64) >> 33``.
    """
    filters = as_filters(filters, "filters")
    return sampled_keys(filters, band_positions(filters.shape[1] * 64, bands, rows, seed))
