"""Match engines: one interface, several backends (the Splink pattern).

An engine compares two departments' filters and returns the scored pairs at
or above the threshold, ordered by (left, right), scores as float32.  The
in-process engine runs the compiled kernel here; the Dask engine runs the
same partitioned work on a Dask distributed cluster.  Both have two modes:

* exact (the default): every pair is compared (``dice_scores_above``, pruned
  by popcount), so every pair at or above the threshold is found;
* blocked (``blocking=LshParams(...)``): candidates come from bit-sampling
  LSH (``server.blocking``) and only they are scored; a pair is returned when
  it is a candidate and its Dice reaches the threshold, scored and tested
  exactly as the exact mode does, so the blocked result is the exact result
  restricted to the candidates.

For one mode and one set of parameters, ``LocalEngine`` and ``DaskEngine``
return identical ``ScoredPairs``: how the work is split never changes it.

``compare(left, right, threshold, progress=None)``: ``progress(done, total)``,
when given, is called as chunks finish, in units of the all-pairs space
(``total = len(left) * len(right)``; in blocked mode ``done`` grows with the
share of bands done), and once at the end with ``done == total``.

Engines by URL (``engine_from_url``, the coordinator's ``--engine``):

==========================================  ======================================
``local`` (or empty)                        in process: exact, LSH-blocked above
                                            ``AUTO_EXACT_PAIRS`` pairs (the default)
``local+exact``                             in process, exact always
``local+lsh``                               in process, blocked, ``LshParams()``
``local+lsh?bands=900&rows=22``             in process, blocked, those parameters
``dask://HOST:PORT``                        Dask scheduler at HOST:PORT: exact or
                                            blocked per pair, as ``local`` chooses
``dask+exact://HOST:PORT``                  Dask, exact always
``dask+lsh://HOST:PORT?bands=..&rows=..``   Dask, blocked
==========================================  ======================================

LSH parameters in the query: ``bands``, ``rows``, ``seed``, ``max_bucket``.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Protocol, Self
from urllib.parse import parse_qs, urlsplit

import numpy as np

from server.blocking import (
    BlockingStats,
    LshParams,
    band_positions,
    band_slices,
    lsh_links,
    lsh_links_multi,
    score_candidates,
    slice_candidates,
)
from server.matching import ScoredPairs, dice_scores_above, popcounts

Progress = Callable[[int, int], None]

__all__ = ["DaskEngine", "Engine", "LocalEngine", "Progress", "engine_from_url"]

_CHUNKS_FOR_PROGRESS = 16  # left chunks of an exact local compare that reports progress


class Engine(Protocol):
    name: str

    def compare(
        self, left: np.ndarray, right: np.ndarray, threshold: float, progress: Progress | None = None
    ) -> ScoredPairs: ...


def _empty() -> ScoredPairs:
    return ScoredPairs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))


def _concat(parts: list[tuple[int, ScoredPairs]]) -> ScoredPairs:
    """Chunk results (left offset, pairs), in left order, as one ScoredPairs."""
    parts = [(offset, p) for offset, p in parts if len(p)]
    if not parts:
        return _empty()
    return ScoredPairs(
        np.concatenate([p.left + offset for offset, p in parts]),
        np.concatenate([p.right for _, p in parts]),
        np.concatenate([p.score for _, p in parts]),
    )


def _row_chunks(n: int, chunks: int) -> list[tuple[int, int]]:
    cuts = np.linspace(0, n, max(1, min(chunks, n)) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]


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


class _ChoosesBlocking:
    """How an engine picks exact or blocked per department pair (both engines alike).

    ``blocking``: None (exact), ``LshParams`` (always blocked), or "auto"
    (the default engines): blocked with ``auto_lsh_params`` when a department
    pair has more than ``exact_upto`` pairs and n*m/(n+m) over
    ``exact_depth`` (both sides large), exact otherwise.
    """

    def _set_blocking(self, blocking, exact_upto: int, exact_depth: int) -> None:
        if blocking == "auto":
            self.auto, blocking = True, LshParams()
        elif isinstance(blocking, str):
            raise ValueError(f"blocking must be None, 'auto' or LshParams, got {blocking!r}")
        else:
            self.auto = False
        self.blocking = blocking
        self.exact_upto = exact_upto
        self.exact_depth = exact_depth

    def _params_for(self, n: int, m: int) -> LshParams | None:
        """The blocking ``compare`` uses for n x m records (None: exact)."""
        pairs = n * m
        if self.blocking is None:
            return None
        if self.auto and (pairs <= self.exact_upto or pairs <= self.exact_depth * (n + m)):
            return None
        return auto_lsh_params(pairs) if self.auto else self.blocking


class LocalEngine(_ChoosesBlocking):
    """The compiled kernels in this process: all pairs (exact), or LSH-blocked
    (``blocking``: see ``_ChoosesBlocking``).  ``stats`` adds up what blocking
    did over this engine's compares.
    """

    def __init__(self, blocking: LshParams | str | None = None, exact_upto: int = AUTO_EXACT_PAIRS,
                 exact_depth: int = AUTO_EXACT_DEPTH):
        self._set_blocking(blocking, exact_upto, exact_depth)
        self.name = "local" if self.blocking is None or self.auto else "local+lsh"
        self.stats = BlockingStats()

    def compare(
        self, left: np.ndarray, right: np.ndarray, threshold: float, progress: Progress | None = None
    ) -> ScoredPairs:
        n, m = len(left), len(right)
        total = n * m
        p = self._params_for(n, m)
        if p is None:
            result = self._exact(left, right, threshold, progress)
        else:

            def bands_done(done: int, bands: int) -> None:
                if progress is not None and done < bands:
                    progress(total * done // bands, total)

            result = lsh_links(left, right, threshold, p, stats=self.stats, progress=bands_done)
        if progress is not None:
            progress(total, total)
        return result

    def compare_all(
        self,
        filters: list[np.ndarray],
        thresholds: dict[tuple[int, int], float],
        progress: Progress | None = None,
    ) -> dict[tuple[int, int], ScoredPairs]:
        """``compare`` for several department pairs, each with its own threshold.

        Each pair's result is identical to ``compare(filters[a], filters[b],
        thresholds[(a, b)])``.  The pairs that ``compare`` would block with
        the same parameters share one multi-party pass
        (``lsh_links_multi``: one sort per band over all their departments'
        records, instead of one per pair); exact pairs run one by one.
        ``progress(done, total)`` over the sum of n * m of all the pairs.
        """
        sizes = {pair: len(filters[pair[0]]) * len(filters[pair[1]]) for pair in thresholds}
        total = sum(sizes.values())
        groups: dict[LshParams | None, list[tuple[int, int]]] = {}
        for pair in sorted(thresholds):
            groups.setdefault(self._params_for(len(filters[pair[0]]), len(filters[pair[1]])), []).append(pair)
        out: dict[tuple[int, int], ScoredPairs] = {}
        done = 0

        def shifted(base: int, span: int | None = None):
            if progress is None:
                return None
            if span is None:
                return lambda d, t: progress(base + d, total)
            return lambda d, t: progress(base + span * d // t, total) if d < t else None

        for a, b in groups.pop(None, []):
            out[(a, b)] = self._exact(filters[a], filters[b], thresholds[(a, b)], shifted(done))
            done += sizes[(a, b)]
        for params, group in groups.items():
            span = sum(sizes[p] for p in group)
            found = lsh_links_multi(filters, {p: thresholds[p] for p in group}, params, stats=self.stats,
                                    progress=shifted(done, span))
            out.update(found)
            done += span
        if progress is not None:
            progress(total, total)
        return out

    @staticmethod
    def _exact(left, right, threshold, progress) -> ScoredPairs:
        if progress is None or len(left) < 2 * _CHUNKS_FOR_PROGRESS:
            return dice_scores_above(left, right, threshold)
        m = len(right)
        right_counts = popcounts(right)
        parts = []
        for a, b in _row_chunks(len(left), _CHUNKS_FOR_PROGRESS):
            parts.append((a, dice_scores_above(left[a:b], right, threshold, right_counts=right_counts)))
            if b < len(left):
                progress(b * m, len(left) * m)
        return _concat(parts)


# --------------------------------------------------------------------------
# Dask
# --------------------------------------------------------------------------


def _exact_task(left: np.ndarray, right: np.ndarray, threshold: float) -> ScoredPairs:
    return dice_scores_above(left, right, threshold)


def _blocked_task(
    left: np.ndarray, right: np.ndarray, positions: np.ndarray, max_bucket: int, threshold: float
) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """One slice of bands: its candidates, scored; the passing ones as pair codes."""
    m = right.shape[0]
    codes, buckets, skipped = slice_candidates(left, right, positions, max_bucket)
    found = score_candidates(left, right, codes // m, codes % m, threshold)
    return found.left * m + found.right, found.score, len(codes), buckets, skipped


def _warm_up() -> bool:
    """Compile (or load from numba's cache) the kernels a task runs."""
    rng = np.random.default_rng(0)
    filters = rng.integers(0, 2**63, size=(64, 16), dtype=np.int64).view(np.uint64)
    dice_scores_above(filters, filters, 0.5)
    positions = band_positions(1024, 2, 8)
    _blocked_task(filters, filters, positions, 1000, 0.5)
    return True


class DaskEngine(_ChoosesBlocking):
    """The same work on a Dask distributed cluster (``dask://HOST:PORT``).

    ``blocking`` as for ``LocalEngine`` (``dask://`` is "auto", the choice
    the default local engine makes per department pair).

    Exact mode cuts the left side into row chunks; each task runs
    ``dice_scores_above`` on (chunk, right) and the chunks are concatenated
    in row order.  Blocked mode cuts the *bands* into slices; each task finds
    its slice's candidates on the whole of both sides (so bucket sizes are
    the same as in one process), scores them and keeps those at or above the
    threshold; the union is sorted by (left, right).  Either way the result
    is identical to ``LocalEngine``'s with the same ``blocking``.

    The right side (both sides, blocked) is scattered to every worker once
    per compare.  The client connects on first use (``connect()``), and warms
    the workers' compiled kernels.  In blocked mode ``stats.pairs_compared``
    counts a candidate once per slice that found it (the work done).
    """

    def __init__(
        self,
        address: str,
        *,
        blocking: LshParams | str | None = None,
        chunks_per_worker: int = 4,
        client=None,
        exact_upto: int = AUTO_EXACT_PAIRS,
        exact_depth: int = AUTO_EXACT_DEPTH,
    ):
        self.address = address
        self._set_blocking(blocking, exact_upto, exact_depth)
        self.name = "dask" if self.blocking is None or self.auto else "dask+lsh"
        self.chunks_per_worker = chunks_per_worker
        self.stats = BlockingStats()
        self._client = client
        self._own_client = client is None
        self._warm = False

    def connect(self):
        if self._client is None:
            from distributed import Client

            self._client = Client(self.address)
        if not self._warm:
            self._client.run(_warm_up)
            self._warm = True
        return self._client

    def close(self) -> None:
        if self._client is not None and self._own_client:
            self._client.close()
        self._client = None
        self._warm = False

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _workers(self, client) -> int:
        return max(1, len(client.scheduler_info().get("workers", {})))

    def compare(
        self, left: np.ndarray, right: np.ndarray, threshold: float, progress: Progress | None = None
    ) -> ScoredPairs:
        from server.matching import _check_pair, _check_threshold

        left, right = _check_pair(left, right)
        threshold = _check_threshold(threshold)
        n, m = left.shape[0], right.shape[0]
        total = n * m
        if n == 0 or m == 0:
            if progress is not None:
                progress(total, total)
            return _empty()
        client = self.connect()
        parts = self._workers(client) * self.chunks_per_worker
        params = self._params_for(n, m)
        if params is None:
            result = self._exact(client, left, right, threshold, parts, progress)
        else:
            result = self._blocked(client, left, right, threshold, params, parts, progress)
        if progress is not None:
            progress(total, total)
        return result

    def _run(self, client, futures, weights, total, progress) -> list:
        """Results of ``futures`` in their order, reporting progress as they finish."""
        from distributed import as_completed

        if progress is not None:
            index = {f.key: k for k, f in enumerate(futures)}
            done = 0
            for future in as_completed(futures):
                done += weights[index[future.key]]
                if done < total:
                    progress(done, total)
        return client.gather(futures)

    def _exact(self, client, left, right, threshold, parts, progress) -> ScoredPairs:
        m = right.shape[0]
        chunks = _row_chunks(left.shape[0], parts)
        right_f = client.scatter(right, broadcast=True)
        left_fs = client.scatter([left[a:b] for a, b in chunks])
        futures = [client.submit(_exact_task, lf, right_f, threshold, pure=False) for lf in left_fs]
        results = self._run(client, futures, [(b - a) * m for a, b in chunks], left.shape[0] * m, progress)
        return _concat([(a, r) for (a, _), r in zip(chunks, results)])

    def _blocked(self, client, left, right, threshold, p: LshParams, parts, progress) -> ScoredPairs:
        n, m = left.shape[0], right.shape[0]
        positions = band_positions(left.shape[1] * 64, p.bands, p.rows, p.seed)
        slices = band_slices(p.bands, n, m, parts)
        left_f = client.scatter(left, broadcast=True)
        right_f = client.scatter(right, broadcast=True)
        futures = [
            client.submit(_blocked_task, left_f, right_f, positions[b0:b1], p.max_bucket, threshold, pure=False)
            for b0, b1 in slices
        ]
        total = n * m
        weights = [total * (b1 - b0) // p.bands for b0, b1 in slices]
        results = self._run(client, futures, weights, total, progress)
        stats = BlockingStats(pairs_total=total, calls=1)
        for _, _, compared, buckets, skipped in results:
            stats.pairs_compared += int(compared)
            stats.buckets_skipped += int(buckets)
            stats.pairs_skipped += int(skipped)
        self.stats.add(stats)
        codes = np.concatenate([r[0] for r in results])
        scores = np.concatenate([r[1] for r in results])
        codes, first = np.unique(codes, return_index=True)  # a pair found by several slices
        return ScoredPairs(codes // m, codes % m, scores[first])


# --------------------------------------------------------------------------
# By URL
# --------------------------------------------------------------------------


def _lsh_params(query: str) -> LshParams:
    known = {"bands", "rows", "seed", "max_bucket"}
    values = {}
    for key, vals in parse_qs(query, strict_parsing=False).items():
        if key not in known:
            raise ValueError(f"unknown LSH parameter {key!r}: use {', '.join(sorted(known))}")
        try:
            values[key] = int(vals[-1])
        except ValueError:
            raise ValueError(f"LSH parameter {key} must be an integer, got {vals[-1]!r}") from None
    return LshParams(**values)


def engine_from_url(url: str | None) -> Engine:
    """``local``, ``local+exact``, ``local+lsh[?bands=..&rows=..]``, ``dask://HOST:PORT``,
    ``dask+exact://HOST:PORT``, ``dask+lsh://HOST:PORT[?..]`` (module doc)."""
    if not url or url in ("local", "inprocess"):
        return LocalEngine(blocking="auto")
    if url == "local+exact":
        return LocalEngine()
    if url.startswith("local+lsh"):
        rest = url[len("local+lsh"):]
        if rest and not rest.startswith("?"):
            raise ValueError(f"unknown engine {url!r}")
        return LocalEngine(blocking=_lsh_params(rest[1:]))
    parts = urlsplit(url)
    if parts.scheme in ("dask", "dask+exact", "dask+lsh"):
        if not parts.hostname or parts.port is None:
            raise ValueError(f"engine {url!r}: expected {parts.scheme}://HOST:PORT")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        if parts.query and parts.scheme != "dask+lsh":
            raise ValueError(f"engine {url!r}: parameters need dask+lsh://")
        if parts.scheme == "dask+lsh":
            blocking = _lsh_params(parts.query)
        else:
            blocking = "auto" if parts.scheme == "dask" else None
        return DaskEngine(f"tcp://{host}:{parts.port}", blocking=blocking)
    raise ValueError(
        f"unknown engine {url!r}: use 'local', 'local+exact', 'local+lsh', 'dask://HOST:PORT', "
        "'dask+exact://HOST:PORT' or 'dask+lsh://HOST:PORT'"
    )
