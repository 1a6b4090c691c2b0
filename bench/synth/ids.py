"""Digit strings: resident identity numbers (GB 11643-1999), and the zero-padded numbers
phones and record ids are written with."""
from __future__ import annotations

import numpy as np

from bench.synth.tables import PHONE_PREFIXES

_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_CHECK = "10X98765432"


def id_check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of the first 17 digits."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError(f"need 17 digits, got {first17!r}")
    s = sum(int(c) * int(w) for c, w in zip(first17, _ID_WEIGHTS))
    return _CHECK[s % 11]


def resident_id(region: str, birth: str, seq: int) -> str:
    """An 18-character resident ID: region (6 digits), birth date (YYYYMMDD or ISO), sequence
    0-999 (odd = male), check character."""
    body = f"{region}{birth.replace('-', '')}{seq:03d}"
    return body + id_check_char(body)


def id_is_valid(value: str) -> bool:
    """Whether an 18-character ID carries the right check character (upper-case X only)."""
    return len(value) == 18 and value[:17].isdigit() and _CHECK[
        int((np.frombuffer(value[:17].encode(), np.uint8) - 48).astype(np.int64) @ _ID_WEIGHTS) % 11] == value[17]


def zfill(a: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers as zero-padded strings (object array)."""
    a = np.asarray(a)
    if a.size == 0:
        return np.zeros(0, dtype=object)
    return np.char.zfill(a.astype(np.int64).astype(str), width).astype(object)


def ids_vectorised(region: np.ndarray, ymd: np.ndarray, seq: np.ndarray) -> np.ndarray:
    body = np.char.add(np.char.add(region.astype("U6"), ymd.astype("U8")), zfill(seq, 3))
    digits = np.frombuffer(body.astype("S17").tobytes(), np.uint8).reshape(-1, 17).astype(np.int64) - 48
    check = np.array(list(_CHECK))[(digits @ _ID_WEIGHTS) % 11]
    return np.char.add(body, check).astype(object)



def phone_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random mobile numbers: a real prefix and eight digits."""
    return PHONE_PREFIXES[rng.integers(0, len(PHONE_PREFIXES), n)] + zfill(rng.integers(0, 10 ** 8, n), 8)
