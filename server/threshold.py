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

import numpy as np


ALPHA = 0.01  # estimated share of false links among those accepted
SAMPLE = 2000  # records per side whose best and runner-up are measured
GRID = 0.005


def _sample(n: int) -> np.ndarray:
    # Evenly spaced rows: deterministic, so a rerun on the same uploads links the same.
    return np.unique(np.linspace(0, n - 1, min(SAMPLE, n)).astype(np.int64))


def score_profile(left: np.ndarray, right: np.ndarray, floor: float, engine) -> tuple[np.ndarray, np.ndarray]:
    """Best and runner-up scores of sampled records of both sides against the other side."""
    bests, seconds = [], []
    for a, b in ((left, right), (right, left)):
        if not len(a) or not len(b):
            continue
        rows = _sample(len(a))
        # The two highest scores per sampled row, without building the pairs:
        # at a floor of 0.6 on balanced filters ~10% of pairs pass, 2e8 pairs
        # for 2,000 rows against a million records (docs/scale.md).
        best, second = engine.best_two(np.ascontiguousarray(a[rows]), b, floor)
        bests.append(best)
        seconds.append(second)
    if not bests:
        return np.empty(0), np.empty(0)
    return np.concatenate(bests), np.concatenate(seconds)


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


def auto_threshold(left: np.ndarray, right: np.ndarray, floor: float, engine) -> float:
    """The threshold for one department pair, from the best two scores ``engine`` finds."""
    best, second = score_profile(left, right, floor, engine)
    return threshold_from_scores(best, second, floor)
