"""How a pass's tasks run: the ``Tasks`` a pass is handed, and threads in process.

A blocked pass cuts its work into tasks (slices of bands, row chunks) and
hands them to a ``Tasks``: in process a thread pool (``THREADS``), on a
cluster the Dask engine (``server.engine.dask``).  The results are the same
however the tasks run; only the time and the place change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numba

Task = Callable[..., object]
Progress = Callable[[int, int], None]  # (done, total), in the caller's units


class Tasks(Protocol):
    def parts(self) -> int:
        """How many tasks to cut a pass into (a few per worker, for balance)."""

    def run(self, task: Task, shared: tuple, items: Sequence[tuple], weights: Sequence[int] | None = None,
            progress: Progress | None = None, threaded: bool = True) -> Iterable:
        """``task(*shared, *item)`` for each item; the results in item order.

        ``shared`` holds what every task reads (the filters: sent once to a
        cluster); ``progress(done, total)`` over the weights, as tasks finish.
        ``threaded=False``: the task runs threads of its own (the exact kernel),
        so in process they run one at a time.
        """


def thread_count() -> int:
    return max(1, numba.get_num_threads())


def parallel(fn: Callable, items: Iterable) -> Iterator:
    """``fn`` over ``items`` on a pool of numba's thread count (fn releases the GIL).

    Returns an iterator over the results, in order, so a caller can fold them
    in as they come.
    """
    items = list(items)
    threads = min(thread_count(), len(items))
    if threads <= 1:
        return map(fn, items)
    pool = ThreadPoolExecutor(max_workers=threads)
    try:
        results = pool.map(fn, items)
    finally:
        pool.shutdown(wait=False)
    return results


class Threads:
    """Tasks on this process's threads, a few per thread."""

    def parts(self) -> int:
        return 4 * thread_count()

    def run(self, task: Task, shared: tuple, items: Sequence[tuple], weights: Sequence[int] | None = None,
            progress: Progress | None = None, threaded: bool = True) -> Iterator:
        run_one = lambda item: task(*shared, *item)  # noqa: E731
        results = parallel(run_one, items) if threaded else map(run_one, items)
        if progress is None:
            yield from results
            return
        weights = list(weights or [1] * len(items))
        total, done = sum(weights), 0
        for weight, result in zip(weights, results):
            done += weight
            progress(done, total)
            yield result


THREADS = Threads()
