"""The attacker's public knowledge: name and birth-year frequency tables of a population."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import sparse


class Census:
    """Public frequency tables: (name, birth year) entities with counts, and their tokens."""

    def __init__(self, names: Sequence[str], years: Sequence[str], tokeniser: Callable[[str, str], set[str]],
                 use_year: bool):
        pairs: dict[tuple[str, str], int] = {}
        for n, y in zip(names, years):
            key = (n, y if use_year else "")
            pairs[key] = pairs.get(key, 0) + 1
        self.entities = list(pairs)
        self.weights = np.array([pairs[e] for e in self.entities], dtype=np.float64)
        self.names = np.array([e[0] for e in self.entities], dtype=object)
        vocab: dict[str, int] = {}
        rows, cols = [], []
        for i, (n, y) in enumerate(self.entities):
            for t in tokeniser(n, y):
                rows.append(i)
                cols.append(vocab.setdefault(t, len(vocab)))
        self.tokens = list(vocab)
        self.matrix = sparse.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)),
                                        shape=(len(self.entities), len(vocab)))
        self.matrix_csc = self.matrix.tocsc()

    def has(self, token: int) -> np.ndarray:
        col = np.zeros(len(self.entities), dtype=bool)
        col[self.matrix_csc[:, token].indices] = True
        return col
