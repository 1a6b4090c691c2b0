"""An .xlsx extract through openpyxl, read-only (constant memory, any size).

The first sheet unless one is named; its first non-empty row is the header.
Rows keep their sheet row numbers, which is what the department sees in Excel.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd

from agents.extract.cells import cell_text
from agents.extract.problems import ExtractError, Problems


def read_xlsx(path: Path, sheet: str | None = None) -> pd.DataFrame:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as e:
        raise ExtractError(f"{path}: not a readable .xlsx workbook ({type(e).__name__}: {e})") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise ExtractError(f"{path}: no sheet {sheet!r}; the workbook has {', '.join(book.sheetnames)}")
        rows = (book[sheet] if sheet is not None else book.worksheets[0]).iter_rows(values_only=True)
        return _frame(rows, f"{path} sheet {sheet}" if sheet else str(path))
    finally:
        book.close()


def _frame(rows, where: str) -> pd.DataFrame:
    header: list[str] | None = None
    problems = Problems(where)
    records, lines = [], []
    for line, cells in enumerate(rows, start=1):
        values = [cell_text(v) for v in cells]
        while values and not values[-1]:
            values.pop()  # a sheet's rows run as far as its widest row
        if not values:
            continue
        if header is None:
            header = values
            continue
        if len(values) > len(header):
            problems.add(line, f"{len(values)} cells, the header has {len(header)}")
            continue
        records.append(values + [""] * (len(header) - len(values)))
        lines.append(line)
    if header is None:
        raise ExtractError(f"{where}: the sheet is empty (no header row)")
    problems.raise_any()
    frame = pd.DataFrame(records, columns=header, dtype=str)
    frame.index = pd.Index(lines, name="line", dtype="int64")
    return frame
