"""Typed cells (a workbook's, a Parquet file's, a database's) as the strings a CSV would hold.

An ID or a phone stored as a number must read as its digits, not "1.3e+10"
or "13812345678.0"; a date as ISO yyyy-mm-dd, not "2023-07-17 00:00:00".
"""
from __future__ import annotations

import math
from datetime import date, datetime

import pandas as pd


def cell_text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        # 15 significant digits is what a spreadsheet holds and shows.
        return str(int(value)) if value.is_integer() else f"{value:.15g}"
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def column_text(column: pd.Series) -> pd.Series:
    """One column of a typed frame as strings ('' = null), vectorised where the type allows."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return column.dt.strftime("%Y-%m-%d").fillna("")
    if pd.api.types.is_integer_dtype(column) or isinstance(column.dtype, pd.StringDtype):
        return column.astype("string").fillna("").astype(object)
    return column.astype(object).map(cell_text)


def frame_text(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c: column_text(frame[c]) for c in frame.columns}, index=frame.index)
