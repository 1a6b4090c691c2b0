"""Synthetic Bloom filters for the scale bench and the blocking tests: random filters of a
given fill, perturbed copies with a chosen Dice, and populations across departments."""
from __future__ import annotations

import numpy as np

from server.matching import dice_scores_pairs, pack_filters

N_DEPARTMENTS = 6


def random_bits(rng: np.random.Generator, n: int, fill, filter_bits: int = 1024) -> np.ndarray:
    """``(n, filter_bits)`` bool with each row's bits set with probability ``fill`` (scalar or per row)."""
    fill = np.broadcast_to(np.asarray(fill, np.float32), (n,))
    return rng.random((n, filter_bits), dtype=np.float32) < fill[:, None]


def flip_probability(dice, fill):
    """Per-bit flip probability that gives a filter of fill ``fill`` an expected Dice ``dice`` with itself.

    Flipping each bit with probability p keeps K(1-p) of the K set bits and
    sets (N-K)p others: Dice = 2f(1-p) / (2f + p(1-2f)), solved for p.
    """
    dice = np.asarray(dice, np.float64)
    fill = np.asarray(fill, np.float64)
    return 2 * fill * (1 - dice) / (2 * fill + dice * (1 - 2 * fill))


def record_fills(rng: np.random.Generator, n: int, fill: float = 0.45, sd: float = 0.03) -> np.ndarray:
    return np.clip(rng.normal(fill, sd, n), 0.35, 0.6)


def perturbed_pairs(
    rng: np.random.Generator,
    n_left: int,
    n_right: int,
    n_true: int,
    *,
    fill: float = 0.45,
    dice: tuple[float, float] = (0.7, 1.0),
    filter_bits: int = 1024,
):
    """Two sets of packed filters with ``n_true`` true matches between them.

    Every filter has its own fill (normal around ``fill``, sd 0.03).  True
    match k is left row ``true_left[k]`` and right row ``true_right[k]``: the
    right one is the left one with bits flipped at random, at a rate drawn
    so that the pair's Dice spreads uniformly over ``dice``.  Every other
    row is an independent random filter.  Returns (left, right, true_left,
    true_right, true_dice).
    """
    if n_true > min(n_left, n_right):
        raise ValueError("more true matches than records")
    chunk = 10_000
    left = _random_filters(rng, n_left, fill, filter_bits, chunk)
    true_left = rng.permutation(n_left)[:n_true]
    true_right = rng.permutation(n_right)[:n_true]
    right = np.empty((n_right, filter_bits // 64), np.uint64)
    is_true = np.zeros(n_right, bool)
    is_true[true_right] = True
    others = np.flatnonzero(~is_true)
    for a in range(0, len(others), chunk):
        rows = others[a : a + chunk]
        bits = random_bits(rng, len(rows), record_fills(rng, len(rows), fill), filter_bits)
        right[rows] = pack_filters(np.packbits(bits, axis=1), filter_bits)
    for a in range(0, n_true, chunk):
        src = left[true_left[a : a + chunk]]
        k = len(src)
        own_fill = np.bitwise_count(src).sum(axis=1) / filter_bits
        p = flip_probability(rng.uniform(*dice, k), own_fill)
        flips = pack_filters(np.packbits(random_bits(rng, k, p, filter_bits), axis=1), filter_bits)
        right[true_right[a : a + chunk]] = src ^ flips
    true_dice = dice_scores_pairs(left, right, true_left, true_right)
    return left, right, true_left.astype(np.int64), true_right.astype(np.int64), true_dice


def pair_completeness(li, rj, true_left, true_right, m: int) -> np.ndarray:
    """For each true pair, whether (true_left[k], true_right[k]) is among the candidates."""
    found = np.asarray(li, np.int64) * m + np.asarray(rj, np.int64)
    return np.isin(true_left * m + true_right, found)



def population(
    persons: int,
    *,
    departments: int = N_DEPARTMENTS,
    coverage: float = 0.9,
    max_flip: float = 0.1,
    fill: float = 0.45,
    seed: int = 0,
    filter_bits: int = 1024,
):
    """Filters of ``persons`` people as each department holds them.

    Each person has a base filter; each department holds a person with
    probability ``coverage`` (in its own shuffled order), as the base filter
    with each bit flipped with a per-record probability up to ``max_flip``.
    Returns ([filters per department], [person of each row per department]).
    """
    rng = np.random.default_rng(seed)
    chunk = 20_000
    base = _random_filters(rng, persons, fill, filter_bits, chunk)
    filters, who = [], []
    for _ in range(departments):
        held = rng.permutation(np.flatnonzero(rng.random(persons) < coverage))
        out = np.empty((len(held), filter_bits // 64), np.uint64)
        for a in range(0, len(held), chunk):
            rows = held[a : a + chunk]
            p = rng.uniform(0.0, max_flip, len(rows))
            flips = pack_filters(np.packbits(random_bits(rng, len(rows), p, filter_bits), axis=1), filter_bits)
            out[a : a + len(rows)] = base[rows] ^ flips
        filters.append(out)
        who.append(held.astype(np.int64))
    return filters, who



def _random_filters(rng: np.random.Generator, n: int, fill: float, filter_bits: int, chunk: int) -> np.ndarray:
    """``n`` packed random filters, each with its own fill, drawn ``chunk`` rows at a time."""
    out = np.empty((n, filter_bits // 64), np.uint64)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        bits = random_bits(rng, b - a, record_fills(rng, b - a, fill), filter_bits)
        out[a:b] = pack_filters(np.packbits(bits, axis=1), filter_bits)
    return out
