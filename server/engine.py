"""Match engines: one interface, several backends (the Splink pattern).

An engine compares two departments' filters and returns the scored pairs at
or above the threshold. The in-process engine runs the compiled kernel here;
a distributed engine runs the same partitioned work elsewhere.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from server.matching import ScoredPairs, dice_scores_above


class Engine(Protocol):
    name: str

    def compare(self, left: np.ndarray, right: np.ndarray, threshold: float) -> ScoredPairs: ...


class LocalEngine:
    """The compiled Dice kernel in this process (all pairs, pruned by popcount)."""

    name = "local"

    def compare(self, left: np.ndarray, right: np.ndarray, threshold: float) -> ScoredPairs:
        return dice_scores_above(left, right, threshold)


def engine_from_url(url: str | None) -> Engine:
    if not url or url in ("local", "inprocess"):
        return LocalEngine()
    raise ValueError(f"unknown engine {url!r}: use 'local'")
