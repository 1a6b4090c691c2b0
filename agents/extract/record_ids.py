"""Blank and repeated record_ids over a whole extract read in frames.

What is kept per record is a 64-bit hash of its record_id and its line (12
bytes), not the id: 24 MB for 2,000,000 records, whatever the ids' length. Two different ids with the same hash would be reported as
a repeat; for 20,000,000 records the chance of that is about 1 in 100,000.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from agents.extract.problems import Problems


class RecordIds:
    def __init__(self, where: str):
        self.where = where
        self._hashes: list[np.ndarray] = []
        self._lines: list[np.ndarray] = []
        self._blank: list[np.ndarray] = []

    def add(self, ids: pd.Series) -> None:
        """One frame's record_id column, indexed by line."""
        blank = (ids == "").to_numpy()
        lines = ids.index.to_numpy().astype(np.uint32)
        self._blank.append(lines[blank])
        self._hashes.append(pd.util.hash_array(ids.to_numpy(dtype=object)[~blank]))
        self._lines.append(lines[~blank])

    def raise_any(self) -> None:
        """Every blank or repeated record_id, in line order, as one ExtractError."""
        problems = [(int(line), "field record_id is blank") for line in np.concatenate(self._blank or [[]])]
        hashes = np.concatenate(self._hashes or [np.empty(0, np.uint64)])
        lines = np.concatenate(self._lines or [np.empty(0, np.uint32)])
        self._hashes, self._lines = [], []
        if len(hashes) > 1:
            order = np.argsort(hashes, kind="stable")  # a repeat after its first, lines ascending
            ordered = hashes[order]
            repeat = np.concatenate([[False], ordered[1:] == ordered[:-1]])
            if repeat.any():
                group_start = np.maximum.accumulate(np.where(repeat, 0, np.arange(len(order))))
                first = lines[order[group_start]]
                for line, of in zip(lines[order][repeat].tolist(), first[repeat].tolist()):
                    problems.append((line, f"field record_id repeats the value of row {of}; "
                                           "record_id must be unique in the extract"))
        found = Problems(self.where)
        for line, message in sorted(problems):
            found.add(line, message)
        found.raise_any()
