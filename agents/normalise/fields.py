"""The short fields: sex, phone numbers, Latin free text, digits."""
from __future__ import annotations

import re
import unicodedata

from agents.normalise.unicode_forms import nfkc

# GB/T 2261.1: 1 male, 2 female; 0 (unknown) and 9 (unstated) fall to "".
_SEX = {
    "m": "M", "male": "M", "男": "M", "男性": "M", "1": "M",
    "f": "F", "female": "F", "女": "F", "女性": "F", "2": "F",
}


def normalise_sex(raw: str) -> str:
    """"M", "F" or "" (blank, unknown or unreadable)."""
    if not raw:
        return ""
    return _SEX.get(nfkc(raw).strip().lower(), "")


_NON_DIGIT_RE = re.compile(r"[^0-9]+")
# Several numbers in one cell ("138..., 139...") are common; the first is used.
_PHONE_SPLIT_RE = re.compile(r"[,;/、，；|]|\s{2,}|或")
_MOBILE_RE = re.compile(r"1[3-9]\d{9}")


def normalise_phone(raw: str) -> str:
    """Digits only, the first number of a cell; +86/0086/86 dropped before an
    11-digit mobile; "" if fewer than 7 digits remain."""
    if not raw:
        return ""
    text = nfkc(raw)
    for part in _PHONE_SPLIT_RE.split(text):
        digits = _NON_DIGIT_RE.sub("", part)
        if digits:
            break
    else:
        return ""
    if len(digits) == 13 and digits.startswith("86") and _MOBILE_RE.fullmatch(digits[2:]):
        digits = digits[2:]
    elif len(digits) == 15 and digits.startswith("0086") and _MOBILE_RE.fullmatch(digits[4:]):
        digits = digits[4:]
    return digits if len(digits) >= 7 else ""


_NOT_WORD_RE = re.compile(r"[^0-9a-z]+")


def normalise_text(raw: str) -> str:
    """Free text in Latin script (names, street names, places): accents
    dropped, lower case, letters and digits only.

    Spaces go too: registers split and join words at will ("sherlockstreet",
    "rosett a village", "Mary Ann" / "Maryann"), and the q-grams of the
    joined form still carry the word order. "O'Brien" and "St. Kilda" come
    out "obrien" and "stkilda".
    """
    if not raw:
        return ""
    decomposed = unicodedata.normalize("NFKD", raw.lower())
    ascii_only = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NOT_WORD_RE.sub("", ascii_only)


def normalise_digits(raw: str) -> str:
    """The digits of a number written in any form (full-width, spaced,
    hyphenated, a spreadsheet's "4223.0" is read as 4223); "" if none."""
    if not raw:
        return ""
    text = nfkc(raw).strip()
    if text.endswith(".0"):
        text = text[:-2]
    return _NON_DIGIT_RE.sub("", text)
