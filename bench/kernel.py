"""Throughput of the Dice comparison kernel against the NumPy reference.

    python -m bench.kernel [--n 10000] [--bits 1024] [--threads 2]

Random filters, about half the bits set.  Three figures, in pairs per second:

* ``count``: ``_dice_count_above`` at threshold 0, every pair compared and
  tested, nothing built: the comparison throughput alone;
* ``above_0_8``: ``dice_scores_above`` at 0.8, the path the coordinator uses
  (random filters score about 0.5, so it returns almost nothing);
* ``reference``: ``dice_reference``, plain NumPy, timed on a slice of the left
  rows (the full float64 matrix would need n*m*8 bytes).

Each is the best of ``repeats`` runs after a warm-up that compiles the kernels.
Thread count is numba's (``NUMBA_NUM_THREADS`` or ``--threads``).
"""

from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np

from server.matching import (
    _dice_count_above,
    dice_reference,
    dice_scores_above,
    pack_filters,
)


def _random_filters(rng: np.random.Generator, n: int, filter_bits: int) -> np.ndarray:
    raw = rng.integers(0, 256, size=(n, filter_bits // 8), dtype=np.uint8)
    return pack_filters(raw, filter_bits)


def _best(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def run(n: int = 10000, filter_bits: int = 1024, seed: int = 0, *, repeats: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    left = _random_filters(rng, n, filter_bits)
    right = _random_filters(rng, n, filter_bits)
    pairs = n * n

    # Warm-up: compile (or load from cache) before timing.
    _dice_count_above(left[:64], right[:64], 0.0)
    dice_scores_above(left[:64], right[:64], 0.8)

    t_count, hits = _best(lambda: _dice_count_above(left, right, 0.0), repeats)
    t_above, found = _best(lambda: dice_scores_above(left, right, 0.8), repeats)
    n_ref = min(n, 1000)
    t_ref, _ = _best(lambda: dice_reference(left[:n_ref], right), repeats)

    assert hits == pairs
    return {
        "n": n,
        "m": n,
        "filter_bits": filter_bits,
        "threads": numba.get_num_threads(),
        "count_pairs_per_s": pairs / t_count,
        "above_0_8_pairs_per_s": pairs / t_above,
        "above_0_8_links": len(found),
        "reference_pairs_per_s": n_ref * n / t_ref,
        "count_seconds": t_count,
        "above_0_8_seconds": t_above,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--bits", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.threads is not None:
        numba.set_num_threads(args.threads)
    result = run(args.n, args.bits, args.seed, repeats=args.repeats)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
