"""The Dask backend: the same tasks on a Dask distributed cluster (``dask://HOST:PORT``)."""
from __future__ import annotations

import numpy as np

from server.blocking.keys import band_positions
from server.blocking.candidates import slice_candidates
from server.blocking.multi import multi_slice_links
from server.blocking.params import LshParams
from server.engine.base import AUTO_EXACT_DEPTH, AUTO_EXACT_PAIRS, Engine
from server.matching import dice_scores_above, popcounts


def _warm_up() -> bool:
    """Compile (or load from numba's cache) the kernels a task runs."""
    rng = np.random.default_rng(0)
    filters = rng.integers(0, 2**63, size=(64, 16), dtype=np.int64).view(np.uint64)
    dice_scores_above(filters, filters, 0.5)
    positions = band_positions(1024, 2, 8)
    slice_candidates(filters, filters, 1000, positions)
    multi_slice_links([filters, filters], [popcounts(filters)] * 2, np.array([[-1, 0], [-1, -1]]), [(0, 1)], [0.5],
                      1000, np.empty(0, np.uint8), positions)
    return True


def _is_data(value) -> bool:
    return isinstance(value, np.ndarray) or (isinstance(value, list) and bool(value)
                                             and all(isinstance(v, np.ndarray) for v in value))


class DaskEngine(Engine):
    """``blocking`` as for ``Engine`` (``dask://`` is "auto", the choice the
    default local engine makes per department pair).

    What every task reads (the filters) is scattered to every worker once
    per pass; each task's own arrays go to one worker.  The client connects
    on first use (``connect()``) and warms the workers' compiled kernels.
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
        super().__init__(blocking, exact_upto, exact_depth)
        self.address = address
        self.name = "dask" if self.blocking is None or self.auto else "dask+lsh"
        self.chunks_per_worker = chunks_per_worker
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

    def __enter__(self):
        self.connect()
        return self

    def parts(self) -> int:
        workers = self.connect().scheduler_info().get("workers", {})
        return max(1, len(workers)) * self.chunks_per_worker

    def run(self, task, shared, items, weights=None, progress=None, threaded=True):
        from distributed import as_completed

        client = self.connect()
        shared = [client.scatter(v, broadcast=True) if _is_data(v) else v for v in shared]
        items = [[client.scatter(v) if isinstance(v, np.ndarray) else v for v in item] for item in items]
        futures = [client.submit(task, *shared, *item, pure=False) for item in items]
        if progress is not None:
            weights = list(weights or [1] * len(futures))
            index = {f.key: k for k, f in enumerate(futures)}
            total, done = sum(weights), 0
            for future in as_completed(futures):
                done += weights[index[future.key]]
                progress(done, total)
        return client.gather(futures)
