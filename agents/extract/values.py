"""Values as real systems write them, read into the forms the agent parses.

One table says what each extract column holds; a reading only ever turns a
value it recognises into the plain form (an ISO date, a bare number, 0/1) and
leaves anything else as written, so an unreadable value still reaches the
check that names its row and field (agents/indicators.py, agents/quality.py).
"""
from __future__ import annotations

import re
import unicodedata
from datetime import date, timedelta

import pandas as pd

# What each column of the extract contract (fedlink/schema.py) holds, as
# agents/indicators.py and agents/normalise.py use it. Columns not listed
# (names, IDs, codes, addresses, employment_status) are read as written.
COLUMN_KINDS: dict[str, str] = {
    "birth_date": "date",
    "household_size": "number",
    "household_monthly_income": "number",
    "out_of_pocket_12m": "number",
    "inpatient_days_12m": "number",
    "months_since_job_loss": "number",
    "monthly_wage": "number",
    "absence_days_term": "number",
    "properties_owned": "number",
    "dibao": "flag",
    "major_illness": "flag",
    "enrolled": "flag",
    "housing_subsidy": "flag",
}

# Excel's day 1 is 1900-01-01, and it counts a 29 February 1900 that never
# was (serial 60), so serials from 61 on are days after 1899-12-30.
_EXCEL_SERIALS = (1, 2958465)  # 1900-01-01 .. 9999-12-31
_SERIAL_RE = re.compile(r"(\d{1,7})(?:\.\d*)?")  # a fraction is the time of day
# 1,234 and 1,234.5; a full-width comma (1，234) is "," after NFKC.
_GROUPED_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_FLAGS = {"是": "1", "否": "0", "有": "1", "无": "0", "y": "1", "n": "0", "yes": "1", "no": "0",
          "true": "1", "false": "0", "1": "1", "0": "0", "1.0": "1", "0.0": "0"}


def excel_date(raw: str) -> str:
    """An Excel serial date ("45124", "45124.5") as ISO yyyy-mm-dd; anything else unchanged."""
    match = _SERIAL_RE.fullmatch(raw)
    # Four digits are a year written alone ("1985"), not day 1985 of 1900:
    # left as written, so it is counted unreadable rather than read as 1905.
    if match is None or len(match.group(1)) == 4:
        return raw
    serial = int(match.group(1))
    if not _EXCEL_SERIALS[0] <= serial <= _EXCEL_SERIALS[1] or serial == 60:
        return raw
    epoch = date(1899, 12, 30) if serial > 60 else date(1899, 12, 31)
    return (epoch + timedelta(days=serial)).isoformat()


def plain_number(raw: str) -> str:
    """A number written with thousands separators ("1,234", "1，234") without them; else unchanged."""
    text = unicodedata.normalize("NFKC", raw)
    return text.replace(",", "") if _GROUPED_RE.fullmatch(text) else raw


def flag(raw: str) -> str:
    """是/否, 有/无, Y/N, yes/no, true/false as "1"/"0"; anything else unchanged."""
    return _FLAGS.get(unicodedata.normalize("NFKC", raw).lower(), raw)


# Each kind's reading and the values it might change (as a full-match pattern).
_READINGS = {"date": (excel_date, _SERIAL_RE.pattern), "number": (plain_number, r".*[,，].*"),
             "flag": (flag, r"(?!0$|1$|$).*")}


def read_values(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame (stripped strings) with each kind's readings applied; only
    values a reading might change are touched, so a million plain rows stay cheap.
    `frame.attrs["converted"]` counts, per column, the values read from another
    form (for the data-quality summary, agents/quality.py)."""
    converted = {}
    for column in frame.columns.intersection(list(COLUMN_KINDS)):
        reading, candidate = _READINGS[COLUMN_KINDS[column]]
        values = frame[column]
        touch = values.str.fullmatch(candidate)
        if touch.any():
            read = values[touch].map(reading)
            converted[column] = int((read != values[touch]).sum())
            frame[column] = values.where(~touch, read)
    frame.attrs["converted"] = converted
    return frame
