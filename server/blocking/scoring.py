"""Blocked candidates scored, and tested as the exact kernel tests them.

Every blocked pass scores through ``score_candidates``, so a blocked result
is the exact result (``server.matching.dice_scores_above``) restricted to the
candidates, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from server.blocking.candidates import candidate_ranges
from server.blocking.params import BlockingStats, LshParams
from server.blocking.tasks import THREADS, Tasks
from server.matching import ScoredPairs, check_threshold, dice_scores_pairs, need_table, popcounts


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
    threshold = check_threshold(threshold)
    li = np.asarray(li, np.int64)
    rj = np.asarray(rj, np.int64)
    score = dice_scores_pairs(left, right, li, rj)
    near = np.flatnonzero(score >= threshold - 1e-6)
    li, rj, score = li[near], rj[near], score[near]
    left_counts = popcounts(left) if left_counts is None else left_counts
    right_counts = popcounts(right) if right_counts is None else right_counts
    return at_threshold(ScoredPairs(li, rj, score), threshold, left_counts, right_counts, left.shape[1] * 64)


def at_threshold(pairs: ScoredPairs, threshold: float, left_counts: np.ndarray, right_counts: np.ndarray,
                 filter_bits: int) -> ScoredPairs:
    """The pairs (scored at a lower threshold, or candidates) that reach ``threshold``, decided as the
    exact kernel decides: their overlap, recovered exactly from the float32 score, against the least
    passing overlap for ``|A| + |B|``."""
    total = left_counts[pairs.left].astype(np.int64) + right_counts[pairs.right]
    overlap = np.rint(pairs.score.astype(np.float64) * total / 2.0).astype(np.int64)
    keep = overlap >= need_table(check_threshold(threshold), filter_bits)[total]
    return ScoredPairs(pairs.left[keep], pairs.right[keep], pairs.score[keep])


def lsh_links(
    left: np.ndarray,
    right: np.ndarray,
    threshold: float,
    params: LshParams | None = None,
    *,
    stats: BlockingStats | None = None,
    progress: Callable[[int, int], None] | None = None,
    tasks: Tasks = THREADS,
) -> ScoredPairs:
    """The candidates of ``lsh_candidates`` whose Dice reaches ``threshold``.

    The same as ``score_candidates(left, right, *lsh_candidates(...), threshold)``,
    with the de-duplication and scoring split across threads.  The candidates
    are de-duplicated before they are scored, so ``stats.pairs_compared``
    counts each once (``lsh_links_multi`` scores per slice of bands instead,
    keeping memory to the links).
    """
    params = params or LshParams()
    threshold = check_threshold(threshold)
    m = len(right)
    left_counts, right_counts = popcounts(left), popcounts(right)

    def score(codes):
        return score_candidates(
            left, right, codes // m, codes % m, threshold,
            left_counts=left_counts, right_counts=right_counts,
        )

    parts = [p for p in candidate_ranges(left, right, params, stats, progress, score, tasks) if len(p)]
    if not parts:
        return ScoredPairs.empty()
    return ScoredPairs(*(np.concatenate(column) for column in zip(*((p.left, p.right, p.score) for p in parts))))
