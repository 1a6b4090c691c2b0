"""What is wrong with an extract, row by row.

A reader collects every problem it finds instead of stopping at the first,
so one pass over a broken export tells its owner everything to fix; the
caller gets them all in one ExtractError and nothing is sent.
"""
from __future__ import annotations

from dataclasses import dataclass

SHOWN = 20  # problems listed in the message; the count covers all of them


@dataclass(frozen=True)
class Problem:
    line: int  # physical line in the file (header = 1); a sheet's row number
    message: str

    def __str__(self) -> str:
        return f"row {self.line}: {self.message}"


class ExtractError(ValueError):
    """An extract that cannot be sent; the message names the file, the rows and the fields."""

    def __init__(self, message: str, problems: tuple[Problem, ...] = (), total: int = 0):
        super().__init__(message)
        self.problems = problems  # the first SHOWN, in file order
        self.total = total or len(problems)


class Problems:
    """Collects the problems of one extract, keeping the first SHOWN and counting the rest."""

    def __init__(self, where: str):
        self.where = where
        self.first: list[Problem] = []
        self.total = 0

    def add(self, line: int, message: str) -> None:
        self.total += 1
        if len(self.first) < SHOWN:
            self.first.append(Problem(line, message))

    def raise_any(self) -> None:
        if not self.total:
            return
        if self.total == 1:
            raise ExtractError(f"{self.where}: {self.first[0]}", tuple(self.first), 1)
        more = f" (the first {SHOWN} shown)" if self.total > SHOWN else ""
        lines = "\n".join(f"  {p}" for p in self.first)
        raise ExtractError(f"{self.where}: {self.total} bad rows{more}:\n{lines}", tuple(self.first), self.total)
