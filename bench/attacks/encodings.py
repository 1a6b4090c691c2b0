"""The encodings attacked, and the public tokenisation an attacker aligns them with."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from agents.normalise import name_pinyin, normalise_name

WEAK_BITS = 1024
WEAK_HASHES = 20


def name_bigrams(name: str) -> list[str]:
    padded = f"_{name}_"
    return [padded[i:i + 2] for i in range(len(padded) - 1)]


def weak_encode(names: Sequence[str], bits: int = WEAK_BITS, hashes: int = WEAK_HASHES) -> np.ndarray:
    """The weak control: unkeyed double hashing of name bigrams, packbits layout."""
    out = np.zeros((len(names), bits), dtype=np.uint8)
    cache: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        for g in name_bigrams(name) if name else ():
            pos = cache.get(g)
            if pos is None:
                h1 = int.from_bytes(hashlib.md5(g.encode()).digest(), "big")
                h2 = int.from_bytes(hashlib.sha1(g.encode()).digest(), "big")
                pos = cache[g] = [(h1 + j * h2) % bits for j in range(hashes)]
            out[i, pos] = 1
    return np.packbits(out, axis=1)


def weak_tokens(name: str, year: str) -> set[str]:
    return set(name_bigrams(name)) if name else set()


def fedlink_tokens(name: str, year: str, salted: bool = False) -> set[str]:
    """The public tokenisation of the default schema, restricted to what a census has:
    name characters, pinyin bigrams and the birth-year token; with the birth year
    as salt when the hardening salts (the attacker knows the scheme)."""
    out: set[str] = set()
    salt = f"{year}|" if salted else ""
    n = normalise_name(name)
    out.update(f"n:{salt}{c}" for c in n)
    p = name_pinyin(name)
    if p:
        padded = f"_{p}_"
        out.update(f"p:{salt}{padded[i:i + 2]}" for i in range(len(padded) - 1))
    if year:
        out.add("y:" + year)
    return out


def salted_tokens(name: str, year: str) -> set[str]:
    return fedlink_tokens(name, year, salted=True)
