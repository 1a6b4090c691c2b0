"""A CSV extract parsed with every bad row reported at its physical line.

Python's csv module (strict quoting) parses one record at a time from the
file's physical lines, read as it goes (memory does not grow with the file), so a record's line is where it starts even when a quoted
field spans lines. A record that fails is reported and parsing resumes on
the line after its start: an unclosed quote would otherwise swallow the rest
of the file and be reported where the swallowing stopped. The csv module
accepts a quote inside an unquoted field (`王"五`) as text; that is checked
here, on the few records whose values contain a quote.
"""
from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from agents.extract.problems import ExtractError, Problems


class _Lines:
    """The file's physical lines, fed one by one to csv.reader (which reads ahead no
    further). Only the lines of the record being read are kept, so a record that
    fails can be read again from its second line."""

    def __init__(self, file):
        self._file = file
        self._again: list[str] = []  # lines to read again, last first
        self.record: list[str] = []  # the physical lines of the record being read
        self.next = 0  # 0-based number of the next line

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self._again.pop() if self._again else next(self._file)
        self.record.append(line)
        self.next += 1
        return line

    def begin(self) -> None:
        self.record = []

    def more(self) -> bool:
        if self._again:
            return True
        line = next(self._file, None)
        if line is None:
            return False
        self._again.append(line)
        return True

    def again_after_first(self) -> None:
        """Read the failed record's lines again from its second: a record spanning
        lines was likely a quote left open."""
        self._again.extend(reversed(self.record[1:]))
        self.next -= len(self.record) - 1
        self.record = []

    def since(self) -> str:
        return "".join(self.record)


def csv_chunks(path: Path, codec: str, where: str, rows: int) -> tuple[list[str], Iterator[pd.DataFrame]]:
    """The header, and the rows as frames of at most `rows` strings, indexed by the
    physical line each record starts on (header = 1). The file's problems are
    raised together, as one ExtractError, once every row has been read."""
    file = path.open(encoding=codec, newline="")
    lines = _Lines(file)
    reader = csv.reader(lines, strict=True)  # resets at each record, so it may resume elsewhere
    try:
        header = _header(reader, lines, where)
    except BaseException:
        file.close()
        raise
    return header, _chunks(file, lines, reader, header, where, rows)


def _chunks(file, lines: _Lines, reader, header: list[str], where: str, rows: int) -> Iterator[pd.DataFrame]:
    problems = Problems(where)
    records: list[list[str]] = []
    starts: list[int] = []
    with file:
        while lines.more():
            start = lines.next
            lines.begin()
            try:
                row = next(reader)
            except csv.Error as e:
                problem = f"malformed CSV: {e}{_span(start, lines.next)}"
            else:
                if not row:
                    continue
                problem = _row_problem(row, len(header), lines, start)
            if problem:
                problems.add(start + 1, problem)
                lines.again_after_first()
                continue
            records.append(row)
            starts.append(start + 1)
            if len(records) == rows:
                yield _frame(records, starts, header)
                records, starts = [], []
    if records:
        yield _frame(records, starts, header)
    problems.raise_any()


def _frame(records: list[list[str]], starts: list[int], header: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(records, columns=header, dtype=str)
    frame.index = pd.Index(starts, name="line", dtype="int64")
    return frame


def _header(reader, lines: _Lines, where: str) -> list[str]:
    try:
        for row in reader:
            if row:
                header = [h.strip() for h in row]
                break
        else:
            raise ExtractError(f"{where}: the file is empty (no header row)")
    except csv.Error as e:
        raise ExtractError(f"{where}: row {lines.next}: malformed CSV header: {e}") from None
    return header


def _row_problem(row: list[str], width: int, lines: _Lines, start: int) -> str:
    if len(row) != width:
        return f"{len(row)} fields, the header has {width}{_span(start, lines.next)}"
    if '"' in "".join(row):  # one scan in C: a generator per row was 60% of reading a CSV
        at = _stray_quote(lines.since())
        if at is not None:
            where = f" (line {start + 1 + at})" if at else ""
            return f"a quote inside an unquoted field{where}; quote the whole field and double the quote"
    return ""


def _span(start: int, end: int) -> str:
    return f" (the record runs on to line {end}: is a quote left open?)" if end - start > 1 else ""


def _stray_quote(raw: str) -> int | None:
    """Lines into the record of a quote that opens no field, or None."""
    quoted = False
    prev = ","
    for i, ch in enumerate(raw):
        if quoted:
            quoted = ch != '"'
        elif ch == '"':
            # A field opens with a quote; after a closing quote, a quote is an escaped one.
            if prev not in ',\r\n"':
                return raw.count("\n", 0, i)
            quoted = True
        prev = ch
    return None
