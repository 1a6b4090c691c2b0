"""How a register writes what it holds: pinyin in its many styles, traditional
characters (OpenCC), a lunar birthday read as a solar date (lunardate)."""
from __future__ import annotations

import calendar
from functools import lru_cache

from bench.synth.tables import SURNAME_PINYIN, pinyin_of


@lru_cache(maxsize=4)
def _converter(config: str):
    import opencc

    return opencc.OpenCC(config)


def to_traditional(text: str, permit: str = "") -> str:
    """Simplified to traditional: Hong Kong forms for HK and Macau residents, Taiwan's for Taiwan's."""
    return _converter({"HK": "s2hk", "MO": "s2hk", "TW": "s2tw"}.get(permit, "s2t")).convert(text)


def _syllables(text: str, umlaut: str) -> list[str]:
    return [pinyin_of(c).replace("v", umlaut) for c in text]


def pinyin_name(family: str, given: str, style: str, umlaut: str = "v") -> str:
    """A name in pinyin: ``family`` (surname, a Uyghur father's name, or "") and ``given``
    in one of rates.PINYIN_STYLES; ü written ``umlaut`` (ü, v, u or yu)."""
    fam = [SURNAME_PINYIN.get(family) or "".join(_syllables(family, umlaut))] if family else []
    giv = [x for part in given.split() for x in ["".join(_syllables(part, umlaut))]]
    syll = [s for part in given.split() for s in _syllables(part, umlaut)]
    if style == "given_first":
        words = giv + fam
    elif style == "split":
        words = fam + syll
    else:
        words = fam + ["".join(giv)] if fam else giv
    if style == "capitals":
        return " ".join(w.upper() for w in words)
    if style == "no_spaces":
        return "".join(words).upper()
    if style == "lower":
        return " ".join(words).lower()
    return " ".join(w.capitalize() for w in words)


def lunar_as_solar(iso: str) -> str:
    """The lunar date of a solar birth date, written as if it were solar (a lunar 30th in
    a shorter month becomes the month's last day)."""
    from lunardate import LunarDate

    y, m, d = int(iso[:4]), int(iso[5:7]), int(iso[8:10])
    lunar = LunarDate.fromSolarDate(y, m, d)
    day = min(lunar.day, calendar.monthrange(lunar.year, lunar.month)[1])
    return f"{lunar.year:04d}-{lunar.month:02d}-{day:02d}"
