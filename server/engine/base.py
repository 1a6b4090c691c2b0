"""The engine seam: one algorithm, backends that only say how tasks run.

``Engine`` owns what is computed: exact or LSH-blocked per department pair
(``params_for``), ``compare`` (one pair), ``compare_all`` (every department
pair, the blocked ones in one multi-party pass), ``best_two`` (for the
automatic threshold) and ``close``.  A backend supplies only ``parts`` and
``run`` (a ``server.blocking.tasks.Tasks``): the thread pool in process
(``server.engine.local``) or a Dask cluster (``server.engine.dask``).  The
result never depends on the backend or on how the work is cut.

``progress(done, total)``, when given, is called as tasks finish, in units
of the all-pairs space (``total = len(left) * len(right)``, summed over the
pairs for ``compare_all``; in blocked mode ``done`` grows with the share of
bands done), and once at the end with ``done == total``.
"""
from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Self

import numpy as np

from server.blocking.multi import lsh_links_multi
from server.blocking.params import BlockingStats, LshParams
from server.blocking.scoring import lsh_links
from server.blocking.tasks import Progress, Task
from server.matching import ScoredPairs, check_pair, check_threshold, dice_best_two, dice_scores_above, popcounts

# Department pairs with more pairs than this are LSH-blocked by the default
# engine ("local"); smaller ones are compared exactly.  Measured on real
# encodings of a 100k-person synth (docs/scale.md): one 98k x 90k pair takes
# 26 s exact against 12.5 s blocked, and all 15 pairs 35 s in one blocked
# multi-party pass against ~2 min exact; at 1e9 pairs exact takes ~1 s and
# the per-band work of blocking (linear in n + m) is about as much.  Below
# it, exact is no slower and loses nothing.
AUTO_EXACT_PAIRS = 1_000_000_000
# ... and so are pairs with one small side: exact costs n*m, blocking
# (n + m) * L band-sorts, so blocking pays only when n*m / (n + m) (about
# the smaller side) exceeds ~L * 6 ns * 1.2e9 pairs/s ~ 8000.  The automatic
# threshold compares 2,000 sampled records against a whole department:
# exact there takes ~2 s at 1M records, blocked would sort all 1M in every band.
AUTO_EXACT_DEPTH = 8000


def auto_lsh_params(pairs: int) -> LshParams:
    """The default engine's blocking for a department pair of ``pairs`` pairs.

    ``LshParams()`` (r = 26, L = 1200) compares ~6-7e-4 of the pairs of real
    encodings at 10k and 100k persons: fine to ~1e11 pairs (7e7 candidates).  Above that the
    fraction must fall as the pairs grow, or the candidates (8 bytes each,
    several copies while de-duplicated) outgrow memory: r = 32, L = 1600
    (~1e-4 compared by the model fitted to the measured agreement of real
    filters, docs/scale.md), at some cost in the completeness of low-scoring
    true pairs.
    """
    if pairs <= 100_000_000_000:
        return LshParams()
    return LshParams(bands=1600, rows=32)


def _exact_chunk(right: np.ndarray, right_counts: np.ndarray, threshold: float, left: np.ndarray) -> ScoredPairs:
    """One task of an exact compare: a chunk of left rows against the whole right side."""
    return dice_scores_above(left, right, threshold, right_counts=right_counts)


def _row_chunks(n: int, chunks: int) -> list[tuple[int, int]]:
    cuts = np.linspace(0, n, max(1, min(chunks, n)) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]


def _concat(parts: list[tuple[int, ScoredPairs]]) -> ScoredPairs:
    """Chunk results (left offset, pairs), in left order, as one ScoredPairs."""
    parts = [(offset, p) for offset, p in parts if len(p)]
    if not parts:
        return ScoredPairs.empty()
    return ScoredPairs(
        np.concatenate([p.left + offset for offset, p in parts]),
        np.concatenate([p.right for _, p in parts]),
        np.concatenate([p.score for _, p in parts]),
    )


def _before_the_end(progress: Progress | None, base: int, total: int, span: int | None = None):
    """``progress`` for a part of the work starting at ``base``: the end is reported once, by the caller.

    With ``span``, the part reports in its own units (bands) and is scaled to ``span`` pairs.
    """
    if progress is None:
        return None
    if span is None:
        return lambda d, t: progress(base + d, total) if d < t else None
    return lambda d, t: progress(base + span * d // t, total) if d < t else None


def _exact_changed(left: np.ndarray, right: np.ndarray, threshold: float, changed_left: np.ndarray,
                   changed_right: np.ndarray) -> ScoredPairs:
    """The pairs at ``threshold`` with a changed record: changed left rows against every right one,
    the other left rows against the changed right ones; by (left, right)."""
    rows_left, rows_right = np.flatnonzero(changed_left), np.flatnonzero(changed_right)
    same_left = np.flatnonzero(~changed_left)
    parts = []
    if len(rows_left) and len(right):
        p = dice_scores_above(np.ascontiguousarray(left[rows_left]), right, threshold)
        parts.append((rows_left[p.left], p.right, p.score))
    if len(rows_right) and len(same_left):
        p = dice_scores_above(np.ascontiguousarray(left[same_left]), np.ascontiguousarray(right[rows_right]),
                              threshold)
        parts.append((same_left[p.left], rows_right[p.right], p.score))
    if not parts:
        return ScoredPairs.empty()
    lefts, rights, scores = (np.concatenate(column) for column in zip(*parts))
    order = np.lexsort((rights, lefts))
    return ScoredPairs(lefts[order].astype(np.int64), rights[order].astype(np.int64), scores[order])


class Engine(ABC):
    """Compares departments' filters: the scored pairs at or above a threshold,
    ordered by (left, right), scores as float32.

    ``blocking``: None (exact: every pair, ``dice_scores_above``), ``LshParams``
    (always blocked: the exact result restricted to the LSH candidates), or
    "auto" (the default engines): blocked with ``auto_lsh_params`` when a
    department pair has more than ``exact_upto`` pairs and n*m/(n+m) over
    ``exact_depth`` (both sides large), exact otherwise.  ``stats`` adds up
    what blocking did over this engine's compares.
    """

    name: str

    def __init__(self, blocking: LshParams | str | None, exact_upto: int, exact_depth: int):
        if blocking == "auto":
            self.auto, blocking = True, LshParams()
        elif isinstance(blocking, str):
            raise ValueError(f"blocking must be None, 'auto' or LshParams, got {blocking!r}")
        else:
            self.auto = False
        self.blocking = blocking
        self.exact_upto = exact_upto
        self.exact_depth = exact_depth
        self.stats = BlockingStats()

    # -- how tasks run: the backend ------------------------------------------------

    @abstractmethod
    def parts(self) -> int:
        """How many tasks to cut a pass into."""

    @abstractmethod
    def run(self, task: Task, shared: tuple, items: Sequence[tuple], weights: Sequence[int] | None = None,
            progress: Progress | None = None, threaded: bool = True) -> Iterable:
        """``task(*shared, *item)`` per item, results in item order (``server.blocking.tasks.Tasks``)."""

    def exact_chunks(self, n: int, reports: bool) -> int:
        """Row chunks of an exact compare of n left rows (``reports``: progress is wanted)."""
        return self.parts()

    def close(self) -> None:
        """Release what the backend holds; the coordinator calls it on shutdown."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the algorithm -------------------------------------------------------------

    def params_for(self, n: int, m: int) -> LshParams | None:
        """The blocking ``compare`` uses for n x m records (None: exact)."""
        pairs = n * m
        if self.blocking is None:
            return None
        if self.auto and (pairs <= self.exact_upto or pairs <= self.exact_depth * (n + m)):
            return None
        return auto_lsh_params(pairs) if self.auto else self.blocking

    def compare(self, left: np.ndarray, right: np.ndarray, threshold: float,
                progress: Progress | None = None) -> ScoredPairs:
        left, right = check_pair(left, right)
        threshold = check_threshold(threshold)
        n, m = left.shape[0], right.shape[0]
        total = n * m
        params = self.params_for(n, m)
        if n == 0 or m == 0:
            result = ScoredPairs.empty()
        elif params is None:
            result = self._exact(left, right, threshold, _before_the_end(progress, 0, total))
        else:
            result = lsh_links(left, right, threshold, params, stats=self.stats, tasks=self,
                               progress=_before_the_end(progress, 0, total, total))
        if progress is not None:
            progress(total, total)
        return result

    def compare_all(self, filters: list[np.ndarray], thresholds: dict[tuple[int, int], float],
                    progress: Progress | None = None, stats: BlockingStats | None = None,
                    changed: list[np.ndarray] | None = None) -> dict[tuple[int, int], ScoredPairs]:
        """``compare`` for several department pairs, each with its own threshold.

        Each pair's result is identical to ``compare(filters[a], filters[b],
        thresholds[(a, b)])``.  The pairs that ``compare`` would block with
        the same parameters share one multi-party pass
        (``lsh_links_multi``: one sort per band over all their departments'
        records, instead of one per pair); exact pairs run one by one.
        ``progress(done, total)`` over the sum of n * m of all the pairs;
        ``stats``, when given, gets what this call's blocking did (``self.stats`` too).

        ``changed`` (a bool mask per department) keeps only each pair's pairs
        with a changed record: an incremental run's new pairs
        (server/pipeline/increments.py).  A blocked pair is still blocked on
        all the records' buckets; an exact pair scores only the changed rows.
        """
        sizes = {pair: len(filters[pair[0]]) * len(filters[pair[1]]) for pair in thresholds}
        total = sum(sizes.values())
        groups: dict[LshParams | None, list[tuple[int, int]]] = {}
        for pair in sorted(thresholds):
            groups.setdefault(self.params_for(len(filters[pair[0]]), len(filters[pair[1]])), []).append(pair)
        out: dict[tuple[int, int], ScoredPairs] = {}
        done = 0
        for a, b in groups.pop(None, []):
            if changed is None:
                out[(a, b)] = self.compare(filters[a], filters[b], thresholds[(a, b)],
                                           _before_the_end(progress, done, total))
            else:
                out[(a, b)] = _exact_changed(filters[a], filters[b], thresholds[(a, b)], changed[a], changed[b])
            done += sizes[(a, b)]
        for params, group in groups.items():
            span = sum(sizes[p] for p in group)
            mine = BlockingStats()
            out.update(lsh_links_multi(filters, {p: thresholds[p] for p in group}, params, stats=mine,
                                       tasks=self, progress=_before_the_end(progress, done, total, span),
                                       changed=changed))
            self.stats.add(mine)
            if stats is not None:
                stats.add(mine)
            done += span
        if progress is not None:
            progress(total, total)
        return out

    def best_two(self, left: np.ndarray, right: np.ndarray, floor: float) -> tuple[np.ndarray, ...]:
        """Each left row's best and second-best Dice against ``right`` at or above ``floor``, and the
        right rows that have them (``server.matching.dice_best_two``; the automatic threshold reads them).

        In process on every backend: it runs on 2,000 sampled rows, less
        work than sending a department to a cluster.
        """
        return dice_best_two(left, right, floor)

    def _exact(self, left, right, threshold, progress) -> ScoredPairs:
        m = right.shape[0]
        chunks = _row_chunks(left.shape[0], self.exact_chunks(left.shape[0], progress is not None))
        results = self.run(_exact_chunk, (right, popcounts(right), threshold), [(left[a:b],) for a, b in chunks],
                           [(b - a) * m for a, b in chunks], progress, threaded=False)
        return _concat([(a, r) for (a, _), r in zip(chunks, results)])
