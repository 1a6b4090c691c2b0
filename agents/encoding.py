"""Keyed Bloom-filter encoding (CLKs) of normalised records.

Every field has its own key, derived from the project secret with HKDF, so a
token hashes to unrelated bits in different fields and under different secrets.
Each token sets `hashes` bits chosen by HMAC-SHA-512 of the token under the
field key ("random hashing": independent positions, not double hashing, whose
structure the known attacks exploit). The coordinator, which never holds the
secret, sees only the bits.
"""
from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF

from fedlink.schema import FieldSpec, LinkageSchema

KEY_CHECK_LABEL = b"fedlink key check v1"


def derive_key(secret: bytes, project_id: str, purpose: str) -> bytes:
    return HKDF(secret, 32, salt=project_id.encode(), hashmod=SHA256, context=f"fedlink/v1/{purpose}".encode())


def field_keys(secret: bytes, project_id: str, schema: LinkageSchema) -> dict[str, bytes]:
    return {f.name: derive_key(secret, project_id, f"field/{f.name}") for f in schema.fields}


def key_check(secret: bytes, project_id: str) -> bytes:
    """A MAC of a fixed label: equal for equal secrets, and reveals nothing of the secret."""
    return hmac.digest(derive_key(secret, project_id, "key-check"), KEY_CHECK_LABEL, "sha256")


def qgrams(value: str, q: int) -> list[str]:
    if q == 1:
        return list(value)
    padded = f"_{value}_"  # padding gives the first and last letters their own grams
    return [padded[i:i + q] for i in range(len(padded) - q + 1)]


def date_tokens(iso: str) -> list[str]:
    """Year, month and day as separate tokens, plus the unordered day-month pair
    and year-month: a day/month swap or one wrong component still shares most."""
    y, m, d = iso[:4], iso[5:7], iso[8:10]
    lo, hi = sorted((m, d))
    return [f"y{y}", f"m{m}", f"d{d}", f"dm{lo}{hi}", f"ym{y}{m}"]


def tokens(field: FieldSpec, value: str) -> list[str]:
    if not value:
        return []  # a blank field sets no bits: it neither agrees nor disagrees
    if field.kind == "date":
        return date_tokens(value)
    if field.qgram == 0:
        return value.split()
    return qgrams(value, field.qgram)


class Encoder:
    """Encodes normalised feature dicts into packed filters under one schema and secret."""

    def __init__(self, schema: LinkageSchema, secret: bytes, project_id: str):
        if schema.filter_bits > 1 << 16:
            raise ValueError("filter_bits above 65536 is not supported")
        self.schema = schema
        keys = field_keys(secret, project_id, schema)
        # Tokens repeat (surnames, years, sexes): cache each field's positions.
        self._positions = {
            f.name: lru_cache(maxsize=1 << 16)(_positions_fn(keys[f.name], f.hashes, schema.filter_bits))
            for f in schema.fields
        }

    def positions(self, features: Mapping[str, str]) -> list[int]:
        out: list[int] = []
        for f in self.schema.fields:
            pos = self._positions[f.name]
            for t in tokens(f, features.get(f.name, "")):
                out.extend(pos(t))
        return out

    def encode(self, records: Sequence[Mapping[str, str]]) -> np.ndarray:
        """(n, filter_bits/8) uint8 array, bit order as numpy.packbits."""
        bits = np.zeros((len(records), self.schema.filter_bits), dtype=np.uint8)
        for i, features in enumerate(records):
            bits[i, self.positions(features)] = 1
        return np.packbits(bits, axis=1)


def _positions_fn(key: bytes, k: int, bits: int):
    # One HMAC-SHA-512 yields 32 independent 16-bit positions; more are taken
    # from further blocks with a counter, so any k up to 64 is served.
    def positions(token: str) -> tuple[int, ...]:
        data = token.encode()
        words: list[int] = []
        block = 0
        while len(words) < k:
            digest = hmac.digest(key, block.to_bytes(1, "big") + data, hashlib.sha512)
            words.extend(np.frombuffer(digest, dtype="<u2").tolist())
            block += 1
        return tuple(w % bits for w in words[:k])

    return positions


def dice(a: bytes, b: bytes) -> float:
    """Dice coefficient of two packed filters (for tests and diagnostics)."""
    x, y = int.from_bytes(a, "big"), int.from_bytes(b, "big")
    total = x.bit_count() + y.bit_count()
    return 2 * (x & y).bit_count() / total if total else 0.0

