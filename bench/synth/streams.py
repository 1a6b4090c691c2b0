"""The random streams of a synthetic scenario: one per stage and department, so a stage
draws the same numbers whatever the other stages draw."""
from __future__ import annotations

import numpy as np

from fedlink.schema import DEPARTMENTS

DEPARTMENT_STREAM = {d: i for i, d in enumerate(DEPARTMENTS)}


def stream(seed: int, *ids: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *ids]))
