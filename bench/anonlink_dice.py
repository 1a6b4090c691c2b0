"""anonlink's Dice comparison on filters saved as .npy: the baseline of ``bench.scale --kernel``.

    .venv-baselines/bin/python bench/anonlink_dice.py LEFT.npy RIGHT.npy THRESHOLD [REPEATS]

Runs in the benchmark-only environment (``scripts/bench-env``: anonlink
0.15.3), so it imports nothing of fedlink.  LEFT and RIGHT are ``(n, bytes)``
uint8 arrays of filters in ``numpy.packbits`` order, the same bytes fedlink's
kernel is timed on.  anonlink's C++ kernel runs on the calling thread (one
core).  Prints one JSON line: pairs, the best CPU seconds of REPEATS runs after
one warm-up on a slice, pairs per second and the number of pairs found.
"""

import json
import sys
import time

import numpy as np
from anonlink.similarities import dice_coefficient_accelerated
from bitarray import bitarray


def to_bitarrays(rows: np.ndarray) -> list:
    out = []
    for row in rows:
        b = bitarray(endian="big")  # packbits order: bit k of the filter is bit 7 - k % 8 of byte k // 8
        b.frombytes(row.tobytes())
        out.append(b)
    return out


def main() -> None:
    left = to_bitarrays(np.load(sys.argv[1]))
    right = to_bitarrays(np.load(sys.argv[2]))
    threshold = float(sys.argv[3])
    repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    dice_coefficient_accelerated([left[:100], right[:100]], threshold)
    best, found = float("inf"), 0
    for _ in range(repeats):
        start = time.process_time()  # CPU time, as fedlink's side is timed
        scores, _ = dice_coefficient_accelerated([left, right], threshold)
        best = min(best, time.process_time() - start)
        found = len(scores)
    pairs = len(left) * len(right)
    print(json.dumps({"pairs": pairs, "seconds": best, "pairs_per_s": pairs / best, "found": found}))


if __name__ == "__main__":
    main()
