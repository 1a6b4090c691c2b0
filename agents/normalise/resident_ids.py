"""Resident identity numbers (GB 11643-1999) in every form seen in extracts."""
from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from functools import lru_cache
from operator import mul
from typing import NamedTuple

import numpy as np

from agents.normalise.dates import iso_date
from agents.normalise.unicode_forms import nfkc


class ResidentId(NamedTuple):  # a tuple: built once per record, and cheap to build
    value: str       # canonical 18-char upper-case ID ("" if unusable), 15-digit converted to 18
    valid: bool      # check character correct (ISO 7064 MOD 11-2) and birth date plausible
    birth_date: str  # ISO YYYY-MM-DD taken from the ID, "" if none
    sex: str         # "M"/"F" from the sequence digit (odd = male), "" if none


_UNUSABLE_ID = ResidentId("", False, "", "")
# GB 11643-1999 weights: 2**(17 - i) mod 11 for positions i = 0..16.
_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_ID_ZERO_OFFSET = ord("0") * sum(_ID_WEIGHTS)
_ID_CHECK = "10X98765432"
_ID18_RE = re.compile(r"[0-9]{17}[0-9X]")
_ID15_RE = re.compile(r"[0-9]{15}")
_ID_LOOSE_RE = re.compile(r"[0-9X]{17,18}")
_DIGITS17_RE = re.compile(r"[0-9]{17}")
_ID_STRIP_RE = re.compile(r"[\s\-]+")
# A birth date in the future is a typo; fixed at import, which is fine for a
# process that does not run across years.
_TODAY = date.today().isoformat()


def check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character ("0".."9" or "X") of 17 digits; "" if not 17 ASCII digits."""
    if not isinstance(first17, str) or _DIGITS17_RE.fullmatch(first17) is None:
        return ""
    # On the ASCII codes: every digit carries 48 too, taken off in one step.
    total = sum(map(mul, first17.encode(), _ID_WEIGHTS)) - _ID_ZERO_OFFSET
    return _ID_CHECK[total % 11]


@lru_cache(maxsize=1 << 16)  # birth dates repeat, IDs do not
def _id_birth_date(yyyymmdd: str) -> str:
    if not yyyymmdd.isdigit() or not yyyymmdd.isascii() or len(yyyymmdd) != 8:
        return ""
    iso = iso_date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    return iso if iso and iso <= _TODAY else ""


def _id_sex(seq_digit: str) -> str:
    if not seq_digit.isdigit() or not seq_digit.isascii():
        return ""
    return "M" if int(seq_digit) % 2 else "F"


def parse_resident_id(raw: str) -> ResidentId:
    """Parse a resident ID (GB 11643-1999) in any of the forms seen in extracts.

    Whitespace and hyphens are removed, NFKC applied, x upper-cased.
    - 18 characters, 17 digits then a digit or X: value is the ID; valid if
      the check character is right and the birth date is a real date in
      1900..today.
    - 15 digits (legacy): "19" is inserted before the YYMMDD birth date and
      the check character computed; valid if the birth date is real.
    - anything else that is 17-18 characters of [0-9X] (a dropped digit, an
      X in the wrong place): value is kept as is, valid=False, so that one
      wrong digit still shares most q-grams with the right ID.
    - otherwise value "" (unusable).
    birth_date and sex are read whenever the embedded date is real, even for
    an invalid ID; callers that fill blanks from the ID use only valid ones.
    """
    if not raw:
        return _UNUSABLE_ID
    # Not cached: IDs are nearly all unique (callers map repeated values once).
    text = nfkc(raw)
    if not text.isalnum():
        text = _ID_STRIP_RE.sub("", text)
    text = text.upper()
    if _ID18_RE.fullmatch(text):
        birth = _id_birth_date(text[6:14])
        sex = _id_sex(text[16]) if birth else ""
        valid = bool(birth) and check_char(text[:17]) == text[17]
        return ResidentId(text, valid, birth, sex)
    if _ID15_RE.fullmatch(text):
        # 15-digit IDs were issued before 2000, to people born in the 1900s.
        first17 = text[:6] + "19" + text[6:]
        birth = _id_birth_date(first17[6:14])
        sex = _id_sex(first17[16]) if birth else ""
        return ResidentId(first17 + check_char(first17), bool(birth), birth, sex)
    if _ID_LOOSE_RE.fullmatch(text):
        birth = _id_birth_date(text[6:14])
        sex = _id_sex(text[16]) if birth and len(text) > 16 else ""
        return ResidentId(text, False, birth, sex)
    return _UNUSABLE_ID


_CHECK_CODES = np.frombuffer(_ID_CHECK.encode(), dtype=np.uint8).astype(np.uint32)
_WEIGHTS = np.array(_ID_WEIGHTS, dtype=np.int64)
_ZERO, _NINE, _X = ord("0"), ord("9"), ord("X")
_BATCH = 16  # below this numpy's call overhead outweighs what it saves (record_features: one row)


def parse_resident_ids(values: Sequence[str]) -> list[ResidentId]:
    """parse_resident_id of each value. IDs written as they should be (18 ASCII
    characters, 17 digits and a digit or X) are checked all at once in numpy;
    every other form goes through parse_resident_id."""
    if len(values) < _BATCH:
        return [parse_resident_id(v) for v in values]
    out = [_UNUSABLE_ID] * len(values)
    lengths = np.fromiter(map(len, values), dtype=np.intp, count=len(values))
    rows = np.flatnonzero(lengths == 18)
    points = np.frombuffer("".join([values[i] for i in rows]).encode("utf-32-le"), dtype=np.uint32)
    points = points.reshape(len(rows), 18)
    digits = (points >= _ZERO) & (points <= _NINE)
    plain = digits[:, :17].all(axis=1) & (digits[:, 17] | (points[:, 17] == _X))
    digits = points[plain, :17].astype(np.int64) - _ZERO
    right = (_CHECK_CODES[digits @ _WEIGHTS % 11] == points[plain, 17]).tolist()
    sexes = np.where(digits[:, 16] % 2 == 1, "M", "F").tolist()
    for i, ok, sex in zip(rows[plain].tolist(), right, sexes):
        text = values[i]
        birth = _id_birth_date(text[6:14])
        out[i] = ResidentId(text, ok and bool(birth), birth, sex if birth else "")
    for i in np.flatnonzero(lengths != 18).tolist() + rows[~plain].tolist():
        out[i] = parse_resident_id(values[i])
    return out
