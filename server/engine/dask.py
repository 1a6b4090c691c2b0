"""The Dask backend: the same tasks on a Dask distributed cluster (``dask://HOST:PORT``)."""
from __future__ import annotations

import numpy as np

from server.blocking.keys import band_positions, bit_planes
from server.blocking.candidates import slice_candidates
from server.blocking.multi import multi_slice_links
from server.blocking.params import BlockingStats, LshParams
from server.engine.base import AUTO_EXACT_DEPTH, AUTO_EXACT_PAIRS, Engine
from server.engine.partitioned import PartitionedPass
from server.engine.partitions import Partitions, new_root, remove, write_partitions
from server.matching import check_pair, dice_scores_above, popcounts

BLOCK_ROWS = 100_000  # records per filter partition: 12.5 MiB of 1024-bit filters, 0.46 GiB of keys at L = 1200


def _warm_up() -> bool:
    """Compile (or load from numba's cache) the kernels a task runs."""
    rng = np.random.default_rng(0)
    filters = rng.integers(0, 2**63, size=(64, 16), dtype=np.int64).view(np.uint64)
    dice_scores_above(filters, filters, 0.5)
    positions = band_positions(1024, 2, 8)
    slice_candidates(filters, filters, 1000, positions)
    planes = bit_planes(filters)
    multi_slice_links([filters, filters], [planes, planes], [popcounts(filters)] * 2, np.array([[-1, 0], [-1, -1]]),
                      [(0, 1)], [0.5], 1000, np.empty(0, np.uint8), positions)
    multi_slice_links([filters, filters], [planes, planes], [popcounts(filters)] * 2, np.array([[-1, 0], [-1, -1]]),
                      [(0, 1)], [0.5], 1000, np.ones(128, np.uint8), positions)  # an incremental run's pass
    return True


def _is_data(value) -> bool:
    return isinstance(value, np.ndarray) or (isinstance(value, list) and bool(value)
                                             and all(isinstance(v, np.ndarray) for v in value))


class DaskEngine(Engine):
    """``blocking`` as for ``Engine`` (``dask://`` is "auto", the choice the
    default local engine makes per department pair).

    Without ``storage``, what every task reads (the filters) is scattered
    to every worker once per pass; each task's own arrays go to one worker.
    With ``storage`` (a folder or fsspec URL the coordinator and every
    worker reach), ``compare_all`` writes the filters there in blocks of
    ``block_rows`` and runs the multi-party pass over those partition files
    (``server.engine.partitioned``): no filter goes through the scheduler,
    each task reads only its partition, and the pass's files are removed
    after it.  The client connects on first use (``connect()``) and warms
    the workers' compiled kernels.
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
        storage: str | None = None,
        block_rows: int = BLOCK_ROWS,
    ):
        super().__init__(blocking, exact_upto, exact_depth)
        if block_rows < 1:
            raise ValueError(f"block_rows must be positive, got {block_rows}")
        self.storage = storage
        self.block_rows = block_rows
        self.last_pass: PartitionedPass | None = None  # its task reports: what each task read, where
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

    def compare_all(self, filters, thresholds, progress=None, stats=None, changed=None):
        """As ``Engine.compare_all``; with ``storage``, over partition files (class doc), except an
        incremental run's pass of changed records (shipped as tasks, not yet over partitions)."""
        if self.storage is None or changed is not None:
            return super().compare_all(filters, thresholds, progress, stats, changed)
        for f in filters[1:]:
            check_pair(filters[0], f)
        root = new_root(self.storage)
        try:
            return self.compare_partitions(write_partitions(root, filters, self.block_rows), thresholds,
                                           progress, stats)
        finally:
            remove(root)

    def compare_partitions(self, parts: Partitions, thresholds, progress=None,
                           stats: BlockingStats | None = None):
        """``compare_all`` of departments already written as partitions (``write_department``)."""
        sizes = parts.sizes()
        total = sum(sizes[a] * sizes[b] for a, b in thresholds)
        run = PartitionedPass(self, self.connect(), parts)
        run.submit(thresholds)
        mine = BlockingStats()
        scaled = None if progress is None else (lambda d, t: progress(total * d // t, total))
        out = run.gather(scaled, mine)
        self.last_pass = run
        self.stats.add(mine)
        if stats is not None:
            stats.add(mine)
        if progress is not None:
            progress(total, total)
        return out
