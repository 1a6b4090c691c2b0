"""The in-process backend: tasks on this process's threads."""
from __future__ import annotations

from server.blocking.params import LshParams
from server.blocking.tasks import THREADS
from server.engine.base import AUTO_EXACT_DEPTH, AUTO_EXACT_PAIRS, Engine

_CHUNKS_FOR_PROGRESS = 16  # left chunks of an exact compare that reports progress


class LocalEngine(Engine):
    """The compiled kernels in this process (``blocking``: see ``Engine``)."""

    def __init__(self, blocking: LshParams | str | None = None, exact_upto: int = AUTO_EXACT_PAIRS,
                 exact_depth: int = AUTO_EXACT_DEPTH):
        super().__init__(blocking, exact_upto, exact_depth)
        self.name = "local" if self.blocking is None or self.auto else "local+lsh"

    def parts(self) -> int:
        return THREADS.parts()

    def run(self, task, shared, items, weights=None, progress=None, threaded=True):
        return THREADS.run(task, shared, items, weights, progress, threaded)

    def exact_chunks(self, n: int, reports: bool) -> int:
        # The exact kernel threads itself: one call, or a few in turn so that progress can be told.
        return _CHUNKS_FOR_PROGRESS if reports and n >= 2 * _CHUNKS_FOR_PROGRESS else 1
