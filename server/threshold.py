"""Choosing each department pair's link threshold from the scores, without the truth.

No department holds the truth, so the coordinator reads the threshold off
the score distribution of the pair it links. Every record's best match is
either its true partner or, when it has none there, its closest non-match;
its runner-up (second-best score) is nearly always a non-match. The
runner-ups therefore show how high non-matches reach on this pair's data, in
this project's encoding (fill rate, hardening, field weights), which fixes
where a threshold of 0.75 lies in one project and 0.6 in another.

With F0 the runner-up survival function, N records, pi0 the share of records
with no partner (Storey's estimate: records whose best score stays below the
runner-ups' median, over the share expected if all were unpartnered), the
expected false links above t are pi0 * N * F0(t) (a best score that is a
non-match lies above t as often as a runner-up). The threshold is the
lowest t, on a 0.005 grid from the project's floor up, where that estimate is
at most ALPHA of the records whose best score reaches t: an estimated
false-link rate of 1% at most. The greedy one-to-one grouping then keeps
a record's true partner ahead of its competitors above the threshold.

Measured (docs/quality.md): on synthetic registers the thresholds land at
0.72-0.79 per pair (balanced filters), on FEBRL4, where every record has a
partner, at the floor.
"""
from __future__ import annotations

import hashlib

import numpy as np


ALPHA = 0.01  # estimated share of false links among those accepted
SAMPLE = 2000  # records per side whose best and runner-up are measured
GRID = 0.005


def sample_rows(refs: list[bytes]) -> np.ndarray:
    """The rows of the SAMPLE records whose references hash lowest, in row order.

    By reference, not by position: a record's membership depends on its own
    reference and on the few lowest hashes, so across uploads the sample
    keeps its records (an incremental run keeps their scores:
    server/pipeline/profiles.py), and a rerun on the same uploads links the same.
    """
    if len(refs) <= SAMPLE:
        return np.arange(len(refs), dtype=np.int64)
    keys = np.fromiter((int.from_bytes(hashlib.blake2b(r, digest_size=8).digest(), "big") for r in refs),
                       np.uint64, count=len(refs))
    return np.sort(np.argsort(keys, kind="stable")[:SAMPLE]).astype(np.int64)


def threshold_from_scores(best: np.ndarray, second: np.ndarray, floor: float, alpha: float = ALPHA) -> float:
    """The lowest t >= floor whose estimated false-link rate is at most alpha (module doc)."""
    if not best.size:
        return floor
    seen = second[second >= 0]
    lam = max(float(np.median(seen)), floor) if seen.size else floor
    below_null = float((second < lam).mean())
    pi0 = min(1.0, float((best < lam).mean()) / below_null) if below_null else 1.0
    grid = np.arange(floor, 1.0 + GRID / 2, GRID)
    null_above = (second[None, :] >= grid[:, None]).mean(axis=1)
    accepted = np.maximum((best[None, :] >= grid[:, None]).sum(axis=1), 1)
    ok = np.nonzero(pi0 * best.size * null_above / accepted <= alpha)[0]
    return round(float(grid[ok[0]]), 4) if ok.size else 1.0
