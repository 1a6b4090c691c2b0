"""An .xlsx extract through openpyxl, read-only (constant memory, any size).

The first sheet unless one is named; its first non-empty row is the header.
Rows keep their sheet row numbers, which is what the department sees in Excel.
"""
from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from agents.extract.cells import cell_text
from agents.extract.problems import ExtractError, Problems


def xlsx_chunks(path: Path, sheet: str | None, rows: int) -> tuple[list[str], Iterator[pd.DataFrame]]:
    """The header, and the rows as frames of at most `rows` strings indexed by sheet row;
    the sheet's problems are raised together once every row has been read."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as e:
        raise ExtractError(f"{path}: not a readable .xlsx workbook ({type(e).__name__}: {e})") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise ExtractError(f"{path}: no sheet {sheet!r}; the workbook has {', '.join(book.sheetnames)}")
        cells = enumerate((book[sheet] if sheet is not None else book.worksheets[0]).iter_rows(values_only=True),
                          start=1)
        where = f"{path} sheet {sheet}" if sheet else str(path)
        header = next((values for _, values in _rows(cells)), None)
        if header is None:
            raise ExtractError(f"{where}: the sheet is empty (no header row)")
    except BaseException:
        book.close()
        raise
    return header, _chunks(book, cells, header, where, rows)


def _rows(cells) -> Iterator[tuple[int, list[str]]]:
    for line, row in cells:
        values = [cell_text(v) for v in row]
        while values and not values[-1]:
            values.pop()  # a sheet's rows run as far as its widest row
        if values:
            yield line, values


def _chunks(book, cells, header: list[str], where: str, rows: int) -> Iterator[pd.DataFrame]:
    problems = Problems(where)
    records, lines = [], []
    try:
        for line, values in _rows(cells):
            if len(values) > len(header):
                problems.add(line, f"{len(values)} cells, the header has {len(header)}")
                continue
            records.append(values + [""] * (len(header) - len(values)))
            lines.append(line)
            if len(records) == rows:
                yield _frame(records, lines, header)
                records, lines = [], []
    finally:
        book.close()
    if records:
        yield _frame(records, lines, header)
    problems.raise_any()


def _frame(records: list[list[str]], lines: list[int], header: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(records, columns=header, dtype=str)
    frame.index = pd.Index(lines, name="line", dtype="int64")
    return frame
