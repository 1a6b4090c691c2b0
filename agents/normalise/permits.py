"""Travel and identity documents of Hong Kong, Macau and Taiwan residents, which
registers write where a mainland resident ID would be.

They are their own feature (kind "permit"), never read as a resident ID: a
permit number has no birth date, sex or check character of GB 11643, and
cutting one into an ID's q-grams would make it look like a badly mistyped ID.
The 18-digit residence permits for these residents (港澳台居民居住证, area codes
810000 / 820000 / 830000) are GB 11643 numbers and stay resident IDs.
"""
from __future__ import annotations

import re
from functools import lru_cache

from agents.normalise.unicode_forms import nfkc

_STRIP_RE = re.compile(r"[\s\-()（）\[\]]+")
# 港澳居民来往内地通行证 (回乡证): H (Hong Kong) or M (Macau) and 8 digits; older
# cards add 2 digits counting the renewals, dropped so a renewed card agrees.
_HOME_RETURN_RE = re.compile(r"([HM])(\d{8})(\d{2})?")
# 台湾居民来往大陆通行证 (台胞证): 8 digits since 2015; older booklets 10 digits (the
# last 2 the issue count) and a letter.
_TAIWAN_RE = re.compile(r"(\d{8})(\d{2}[A-Z]?)?")
# 香港身份证: one or two letters, 6 digits and a check digit or A, often in brackets.
# 澳门身份证 (7 digits and a check digit, "1234567(8)") is 8 digits once the
# brackets go, read as the Taiwan form: labels need not be right, only equal
# for one number in every register.
_HKID_RE = re.compile(r"([A-Z]{1,2}\d{6})([0-9A])")


def normalise_permit(raw: str) -> str:
    """A canonical document number with its kind ("H12345678", "M12345678", "T12345678",
    "KA1234567"), or "" if the text is none of the forms above."""
    if not raw:
        return ""
    return _normalise_permit_cached(raw)


@lru_cache(maxsize=1 << 12)  # small: most records hold a resident ID, which is not cached
def _normalise_permit_cached(raw: str) -> str:
    text = _STRIP_RE.sub("", nfkc(raw)).upper()
    if match := _HOME_RETURN_RE.fullmatch(text):
        return match.group(1) + match.group(2)
    if match := _HKID_RE.fullmatch(text):
        return "K" + match.group(1) + match.group(2)
    if match := _TAIWAN_RE.fullmatch(text):
        return "T" + match.group(1)
    return ""


# The residence permits of these residents are resident IDs with the area code of
# their home: 810000 Hong Kong, 820000 Macau, 830000 Taiwan.
_RESIDENCE_REGION = {"810000": "HK", "820000": "MO", "830000": "TW"}
_PERMIT_REGION = {"H": "HK", "M": "MO", "T": "TW", "K": "HK"}
_ID_TEXT_RE = re.compile(r"[0-9]{17}[0-9X]")


def document_region(raw: str) -> str:
    """Where the document of a Hong Kong, Macau or Taiwan resident was issued, "HK", "MO" or
    "TW", from either kind of number: a residence permit's area code (810000, 820000,
    830000) or a travel permit's or identity card's form (normalise_permit); "" for a
    mainland resident ID, a blank or anything else.

    The point: one person's residence permit and travel permit numbers share nothing, and
    registers hold either, so this is what the two have in common."""
    if not raw:
        return ""
    return _document_region_cached(raw)


@lru_cache(maxsize=1 << 12)
def _document_region_cached(raw: str) -> str:
    text = _STRIP_RE.sub("", nfkc(raw)).upper()
    if _ID_TEXT_RE.fullmatch(text):
        return _RESIDENCE_REGION.get(text[:6], "")
    permit = normalise_permit(text)
    return _PERMIT_REGION.get(permit[:1], "")
