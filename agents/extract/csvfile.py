"""A CSV extract parsed with every bad row reported at its physical line.

Python's csv module (strict quoting) parses one record at a time from a list
of physical lines, so a record's line is where it starts even when a quoted
field spans lines. A record that fails is reported and parsing resumes on
the line after its start: an unclosed quote would otherwise swallow the rest
of the file and be reported where the swallowing stopped. The csv module
accepts a quote inside an unquoted field (`王"五`) as text; that is checked
here, on the few records whose values contain a quote.
"""
from __future__ import annotations

import csv
import io

import pandas as pd

from agents.extract.problems import ExtractError, Problems


class _Lines:
    """The file's physical lines, fed one by one to csv.reader (which reads ahead no further)."""

    def __init__(self, text: str):
        self.lines = io.StringIO(text, newline="").readlines()
        self.next = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.next >= len(self.lines):
            raise StopIteration
        self.next += 1
        return self.lines[self.next - 1]

    def since(self, start: int) -> str:
        return "".join(self.lines[start:self.next])


def parse_csv(text: str, where: str) -> pd.DataFrame:
    """The rows as strings, indexed by the physical line each record starts on (header = 1)."""
    lines = _Lines(text)
    reader = csv.reader(lines, strict=True)  # resets at each record, so it may resume elsewhere
    header = _header(reader, lines, where)
    problems = Problems(where)
    records: list[list[str]] = []
    starts: list[int] = []
    while lines.next < len(lines.lines):
        start = lines.next
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
            lines.next = start + 1  # a record spanning lines was likely a quote left open
            continue
        records.append(row)
        starts.append(start + 1)
    problems.raise_any()
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
    if any('"' in v for v in row):
        at = _stray_quote(lines.since(start))
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
