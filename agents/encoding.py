"""Keyed Bloom-filter encoding (CLKs) of normalised records.

Every field has its own key, derived from the project secret with HKDF, so a
token hashes to unrelated bits in different fields and under different secrets.
Each token sets `hashes` bits chosen by HMAC-SHA-512 of the token under the
field key ("random hashing": independent positions, not double hashing, whose
structure the known attacks exploit). The coordinator, which never holds the
secret, sees only the bits.

Encoding runs on a batch of records at once: hashing is per distinct token
(hashlib's C HMAC), cutting and setting bits in numpy (`Encoder`).
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from itertools import chain

import numpy as np
import pandas as pd
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


# Old registers that knew only the year wrote it as 1 January or 1 July.
PLACEHOLDER_DAYS = ("01-01", "07-01")


def date_tokens(iso: str) -> list[str]:
    """Year (twice: it weighs double), month and day as separate tokens, plus the
    unordered day-month pair: a day/month swap or one wrong component still shares
    most, and a lunar birthday written as a solar date (month and day moved by
    weeks) still agrees on the year, 2 of 5 tokens.

    A placeholder day (YYYY-01-01, YYYY-07-01) sets the year tokens only: it is
    no evidence about the month and day, so against the full date of the same
    year it agrees on all it says."""
    y, m, d = iso[:4], iso[5:7], iso[8:10]
    if iso[5:] in PLACEHOLDER_DAYS:
        return [f"y{y}", f"Y{y}"]
    lo, hi = sorted((m, d))
    return [f"y{y}", f"Y{y}", f"m{m}", f"d{d}", f"dm{lo}{hi}"]


def tokens(field: FieldSpec, value: str) -> list[str]:
    if not value:
        return []  # a blank field sets no bits: it neither agrees nor disagrees
    if field.kind == "date":
        return date_tokens(value)
    if field.qgram == 0:
        return value.split()
    return qgrams(value, field.qgram)


class Encoder:
    """Encodes normalised features into packed filters under one schema and secret.

    The work is per distinct value and per distinct token, never per record in
    Python: each field's distinct values are cut into tokens, each new token is
    hashed once (and kept), every distinct value gets its own partial filter
    from one numpy scatter, and a record's filter is the OR of its values'.
    """

    def __init__(self, schema: LinkageSchema, secret: bytes, project_id: str):
        if schema.filter_bits > 1 << 16:
            raise ValueError("filter_bits above 65536 is not supported")
        self.schema = schema
        keys = field_keys(secret, project_id, schema)
        self._positions = {f.name: TokenPositions(keys[f.name], f.hashes, schema.filter_bits) for f in schema.fields}

    def encode(self, features: Mapping[str, Sequence[str]] | Sequence[Mapping[str, str]]) -> np.ndarray:
        """(n, filter_bits/8) uint8 array, bit order as numpy.packbits.

        `features`: a column of values per field name (agents.normalise.feature_columns),
        or one feature dict per record; a missing field is blank."""
        features = feature_arrays(features, self.schema.fields)
        n = len(next(iter(features.values())))
        out = np.zeros((n, self.schema.filter_bits // 8), dtype=np.uint8)
        for f in self.schema.fields if n else ():
            codes, values = pd.factorize(features[f.name])
            out |= self._value_filters(f, values)[codes]
        return out

    def _value_filters(self, field: FieldSpec, values: Sequence[str]) -> np.ndarray:
        """(len(values), filter_bits/8) packed filter of each distinct value on its own."""
        m = self.schema.filter_bits
        owner, codes, distinct = token_table(field, values)
        bits = np.zeros((len(values), m), dtype=np.uint8)
        if len(codes):
            positions = self._positions[field.name](distinct)[codes]  # (tokens, hashes)
            bits.reshape(-1)[(owner[:, None] * m + positions).reshape(-1)] = 1
        return np.packbits(bits, axis=1)


def token_table(field: FieldSpec, values: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every token of every value at once: (owner, code) per token, where owner is the
    index of its value and code the index of the token in `distinct`.

    The same tokens as `tokens`, in the same order; q-grams are cut in numpy from
    the values' code points (one q-gram is q code points packed into an integer),
    whole words and dates in Python."""
    if field.kind == "date" or field.qgram == 0:
        per_value = [tokens(field, v) for v in values]
        lengths = np.fromiter(map(len, per_value), dtype=np.intp, count=len(per_value))
        flat = np.fromiter(chain.from_iterable(per_value), dtype=object, count=int(lengths.sum()))
        codes, distinct = pd.factorize(flat)
        return np.repeat(np.arange(len(values)), lengths), codes, list(distinct)
    q = field.qgram
    # Blank values get no padding, so they give no q-grams at all.
    padded = [v if q == 1 or not v else f"_{v}_" for v in values]
    lengths = np.fromiter(map(len, padded), dtype=np.intp, count=len(padded))
    counts = np.maximum(lengths - q + 1, 0)
    text = "".join(padded)
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    owner = np.repeat(np.arange(len(values)), counts)
    first_gram = np.cumsum(counts) - counts
    starts = (np.cumsum(lengths) - lengths)[owner] + np.arange(len(owner)) - first_gram[owner]
    key = points[starts]
    for j in range(1, q):
        if j % 3 == 0:  # three 21-bit code points fill an int64: renumber before the next
            key = pd.factorize(key)[0].astype(np.int64)
        key = (key << 21) | points[starts + j]
    codes, uniques = pd.factorize(key)
    at = np.empty(len(uniques), dtype=np.intp)
    at[codes[::-1]] = starts[::-1]  # each distinct q-gram's first occurrence
    return owner, codes, [text[i:i + q] for i in at.tolist()]


def feature_arrays(features: Mapping[str, Sequence[str]] | Sequence[Mapping[str, str]],
                   fields: Sequence[FieldSpec]) -> dict[str, np.ndarray]:
    """An object array of values per field, from columns or from one dict per record
    (a missing field is blank)."""
    if not isinstance(features, Mapping):
        features = {f.name: [r.get(f.name, "") for r in features] for f in fields}
    n = len(next(iter(features.values()), ()))
    blank = np.full(n, "", dtype=object)
    return {f.name: np.asarray(features[f.name], dtype=object) if f.name in features else blank for f in fields}


class TokenPositions:
    """The filter positions of tokens under one field key, each token hashed once.

    One HMAC-SHA-512 yields 32 independent 16-bit positions; more are taken from
    further blocks with a counter, so any number of hashes up to 64 is served."""

    CACHE_LIMIT = 1 << 18  # distinct tokens kept before starting over: bounds memory (~30 MB a field)

    def __init__(self, key: bytes, hashes: int, filter_bits: int):
        self._key, self._k, self._bits = key, hashes, filter_bits
        self._blocks = -(-hashes // 32)
        self._known: dict[str, bytes] = {}

    def __call__(self, tokens: Sequence[str]) -> np.ndarray:
        """(len(tokens), hashes) int64 positions, row i those of tokens[i]."""
        known = self._known
        new = [t for t in tokens if t not in known]
        if len(known) + len(new) > self.CACHE_LIMIT:
            known.clear()
            new = list(tokens)
        if new:
            for t, row in zip(new, self._hash(new)):
                known[t] = row.tobytes()
        raw = b"".join([known[t] for t in tokens])
        return np.frombuffer(raw, dtype=np.uint16).reshape(len(tokens), self._k).astype(np.intp)

    def _hash(self, tokens: list[str]) -> np.ndarray:
        key, sha512 = self._key, hashlib.sha512
        blocks = [bytes([b]) for b in range(self._blocks)]
        digests = b"".join([hmac.digest(key, b + t.encode(), sha512) for t in tokens for b in blocks])
        words = np.frombuffer(digests, dtype="<u2").reshape(len(tokens), 32 * self._blocks)[:, :self._k]
        return (words % self._bits).astype(np.uint16)


def dice(a: bytes, b: bytes) -> float:
    """Dice coefficient of two packed filters (for tests and diagnostics)."""
    x, y = int.from_bytes(a, "big"), int.from_bytes(b, "big")
    total = x.bit_count() + y.bit_count()
    return 2 * (x & y).bit_count() / total if total else 0.0

