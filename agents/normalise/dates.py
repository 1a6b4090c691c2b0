"""Dates: any separator form, compact or with a trailing time, to ISO."""
from __future__ import annotations

import re
from datetime import date
from functools import lru_cache

from agents.normalise.unicode_forms import nfkc

# One pattern for every separator form: 1985-03-07, 1985/3/7, 1985.3.7,
# 1985年3月7日; a trailing time (spreadsheet exports add " 00:00:00") is
# tolerated and dropped.
_DATE_SEP_RE = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?"
    r"(?:[\sT]+\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
)
_DATE_COMPACT_RE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_MIN_YEAR, _MAX_YEAR = 1900, 2100


def iso_date(year: int, month: int, day: int) -> str:
    # date() rejects Feb 30, month 13 and so on; the year range keeps out
    # 0001-01-01 placeholders and typo'd centuries.
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        return ""
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return ""


def normalise_date(raw: str) -> str:
    """ISO "YYYY-MM-DD", or "" if blank, unreadable, impossible or outside 1900..2100."""
    if not raw:
        return ""
    return _normalise_date_cached(raw)


@lru_cache(maxsize=1 << 17)
def _normalise_date_cached(raw: str) -> str:
    text = nfkc(raw).strip()
    match = _DATE_SEP_RE.fullmatch(text) or _DATE_COMPACT_RE.fullmatch(text)
    if match is None:
        return ""
    year, month, day = (int(g) for g in match.groups())
    return iso_date(year, month, day)
