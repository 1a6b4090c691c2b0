"""Hardening of the agent's filters against the coordinator, the adversary that
sees every filter but not the project secret.

The project's schema names the hardening (`[schema] hardening = "..."`), so
every department of a project encodes the same way and the choice is data
(it is part of the schema digest an upload is bound to). Whatever the option,
a filter on the wire is `schema.filter_bits` long: options that fold or widen
the filter encode at another length first, so the coordinator needs no
knowledge of the hardening. docs/hardening.md has the measured table behind
the default.

    none       keyed random hashing only (agents/encoding.py)
    salt       the record's birth year salts the keys of every other field:
               one name token sets unrelated bits in different birth years
    balance    encode at half length, append the complement, permute under a
               secret-derived permutation: every filter has exactly half its bits set
    xor        encode at double length and XOR the halves (Schnell et al. 2016)
    blip-R     flip each bit with probability R (0 < R < 0.5); the flips are a
               keyed function of the record's filter, so an unchanged record
               encodes identically in every upload (a resumed upload finds its
               batches again, and monthly uploads cannot be averaged to remove the noise)
    twin       encode at half length twice, under unrelated keys; append the complement
               of the second, permute under a secret-derived permutation: about half the
               bits set, and no two positions are each other's complement in every filter
               (balance's pairs are found from the filters alone: docs/hardening.md)
    diffuse-T  every position the XOR of T positions of the keyed filter, each position
               used T times, under secret-derived permutations (a diffusion layer,
               Armknecht et al. 2023): no position holds one token's bit alone

With `comparison = "segments"` each group of fields is encoded into its own
segment and hardened there (balance: half each segment and its complement,
under the segment's own permutation), and the presence word closes the filter.

    encoder = HardenedEncoder(project.schema, secret, project.project_id)
    packed = encoder.encode(features)        # (n, filter_bits / 8) uint8
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from agents.encoding import Encoder, derive_key, feature_arrays
from fedlink.schema import PRESENCE_BITS, LinkageSchema, hardening_option


class HardenedEncoder:
    """The raw keyed encoder at the length the option needs, then the option."""

    def __new__(cls, schema: LinkageSchema, secret: bytes, project_id: str):
        # A segmented schema gets the segmented encoder, wherever a HardenedEncoder is made.
        if cls is HardenedEncoder and schema.comparison == "segments":
            cls = SegmentedEncoder
        elif cls is HardenedEncoder and schema.id_segment_words():
            cls = IdSegmentEncoder
        return super().__new__(cls)

    def __init__(self, schema: LinkageSchema, secret: bytes, project_id: str):
        name, rate = hardening_option(schema.hardening)
        self.schema, self.name, self.rate = schema, name, rate
        self._secret, self._project_id = secret, project_id
        half = schema.filter_bits // 2
        raw_bits = {"xor": 2 * schema.filter_bits, "balance": half, "twin": half}.get(name, schema.filter_bits)
        self._raw = Encoder(replace(schema, filter_bits=raw_bits), secret, project_id)
        self._key = derive_key(secret, project_id, f"hardening/{name}")
        if name == "twin":
            # HKDF under another project label: the twin's token positions are unrelated to the first's.
            self._twin = Encoder(replace(schema, filter_bits=half), secret, f"{project_id}/twin")
        if name == "salt":
            self._salt_setup()

    def encode(self, features: Mapping[str, Sequence[str]] | Sequence[Mapping[str, str]]) -> np.ndarray:
        """(n, filter_bits / 8) uint8 filters of feature columns (or feature dicts, as Encoder.encode)."""
        if self.name == "salt":
            return self._salted(feature_arrays(features, self.schema.fields))
        raw = self._raw.encode(features)
        if self.name == "xor":
            return xor_fold(raw)
        if self.name == "balance":
            return balance(raw, self._key)
        if self.name == "blip":
            return blip(raw, self.rate, self._key)
        if self.name == "twin":
            return twin(raw, self._twin.encode(features), self._key)
        if self.name == "diffuse":
            return diffuse(raw, int(self.rate), self._key)
        return raw

    # -- salting -------------------------------------------------------------

    def _salt_setup(self) -> None:
        dates = tuple(f for f in self.schema.fields if f.kind == "date")
        if not dates:
            raise ValueError("hardening 'salt' salts with the birth year: the schema needs a date field")
        self._year_field = dates[0].name
        # The date field itself is not salted (it is the salt); everything else is, per year.
        self._dates = Encoder(replace(self.schema, fields=dates), self._secret, self._project_id)
        self._salted_schema = replace(self.schema, fields=tuple(f for f in self.schema.fields if f.kind != "date"))
        self._per_year: dict[str, Encoder] = {}

    def _salted(self, features: dict[str, np.ndarray]) -> np.ndarray:
        out = self._dates.encode(features)
        codes, years = pd.factorize(np.array([v[:4] for v in features[self._year_field]], dtype=object))
        for j, year in enumerate(years):
            enc = self._per_year.get(year)
            if enc is None:
                # Field keys under a per-year project label: HKDF makes them unrelated across years.
                enc = self._per_year[year] = Encoder(self._salted_schema, self._secret,
                                                     f"{self._project_id}/salt/{year}")
            rows = np.flatnonzero(codes == j)
            out[rows] |= enc.encode({name: values[rows] for name, values in features.items()})
        return out


class SegmentedEncoder(HardenedEncoder):
    """Each segment of `schema.segments()` encoded and hardened on its own, then the
    presence word: bit i set where segment i has a value. The presence word says which
    fields a record has, which the fill of an unhardened filter says too; under
    balance it is the only place that says it (docs/hardening.md)."""

    def __init__(self, schema: LinkageSchema, secret: bytes, project_id: str):
        self.schema = schema
        by_name = {f.name: f for f in schema.fields}
        self._parts = []
        for seg in schema.segments():
            fields = tuple(by_name[n] for n in seg.fields)
            part = replace(schema, fields=fields, filter_bits=seg.words * 64, comparison="record", id_segment_bits=0)
            self._parts.append((fields, HardenedEncoder(part, secret, f"{project_id}/segment/{seg.group}")))

    def encode(self, features: Mapping[str, Sequence[str]] | Sequence[Mapping[str, str]]) -> np.ndarray:
        features = feature_arrays(features, self.schema.fields)
        n = len(next(iter(features.values())))
        present = np.zeros((n, PRESENCE_BITS), dtype=np.uint8)
        parts = []
        for i, (fields, encoder) in enumerate(self._parts):
            parts.append(encoder.encode({f.name: features[f.name] for f in fields}))
            present[:, i] = np.logical_or.reduce([features[f.name] != "" for f in fields]) if n else 0
        return np.concatenate(parts + [np.packbits(present, axis=1)], axis=1)


class IdSegmentEncoder(HardenedEncoder):
    """A record-level schema with an ID segment (`schema.id_segment_bits`): the fields other
    than the resident ID hardened into the first part of the filter, the ID alone into the
    last `id_segment_bits`, each under the option and its own keys; a blank ID leaves its
    segment all zero, which no hardened value is, so the coordinator can score a pair with
    a blank ID on the first part alone (server/pipeline/presence.py)."""

    def __init__(self, schema: LinkageSchema, secret: bytes, project_id: str):
        self.schema = schema
        ids = schema.id_fields()
        rest = tuple(f for f in schema.fields if f not in ids)
        bits = schema.id_segment_bits
        self._ids = ids
        self._rest = HardenedEncoder(replace(schema, fields=rest, filter_bits=schema.filter_bits - bits,
                                             id_segment_bits=0), secret, project_id)
        self._id = HardenedEncoder(replace(schema, fields=ids, filter_bits=bits, id_segment_bits=0),
                                   secret, f"{project_id}/id-segment")

    def encode(self, features: Mapping[str, Sequence[str]] | Sequence[Mapping[str, str]]) -> np.ndarray:
        features = feature_arrays(features, self.schema.fields)
        segment = self._id.encode(features)
        blank = np.logical_and.reduce([features[f.name] == "" for f in self._ids])
        segment[blank] = 0
        return np.concatenate([self._rest.encode(features), segment], axis=1)


# --------------------------------------------------------------------------- bit-level options


def _bits(packed: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=1)


def xor_fold(packed: np.ndarray) -> np.ndarray:
    """XOR of the two halves: m bits become m/2."""
    packed = np.asarray(packed, dtype=np.uint8)
    half = packed.shape[1] // 2
    return packed[:, :half] ^ packed[:, half:2 * half]


def _permutation(key: bytes, label: bytes, m: int) -> np.ndarray:
    seed = int.from_bytes(hmac.digest(key, label, "sha256")[:8], "big")
    return np.random.default_rng(seed).permutation(m)


def balance(packed: np.ndarray, key: bytes) -> np.ndarray:
    """Filter then its complement, positions permuted under `key`: exactly half the bits set,
    so the fill no longer tells how many tokens (how long a name or address) a record has."""
    packed = np.asarray(packed, dtype=np.uint8)
    m = packed.shape[1] * 8
    perm = _permutation(key, b"balance-permutation", 2 * m)
    # Position j of the result is bit perm[j] of (filter, complement): bit perm[j] mod m,
    # inverted where perm[j] falls in the complement. np.take gathers far faster than [:, perm].
    gathered = np.packbits(np.take(_bits(packed), perm % m, axis=1), axis=1)
    return gathered ^ np.packbits(perm >= m)


def twin(first: np.ndarray, second: np.ndarray, key: bytes) -> np.ndarray:
    """`first` then the complement of `second` (the same record under unrelated keys), positions
    permuted under `key`. A first-half position is set when the record has one of the tokens
    hashed there; a second-half one when it has none of another, unrelated set of tokens: the
    two agree on every record only if both sets cover the same records, which independent keys
    make a coincidence, so the complement-pair search finds nothing to pair."""
    bits = np.concatenate([_bits(first), 1 - _bits(second)], axis=1)
    return np.packbits(np.take(bits, _permutation(key, b"twin-permutation", bits.shape[1]), axis=1), axis=1)


def diffuse(packed: np.ndarray, t: int, key: bytes) -> np.ndarray:
    """Position j of the result is the XOR of bit perm_r[j] for r < t: t secret permutations, so
    every bit of the filter feeds t positions and no position shows one token's bit alone.
    A record differing in d bits differs in about t * d positions: the linkage cost."""
    bits = _bits(packed)
    out = np.zeros_like(bits)
    for r in range(t):
        out ^= np.take(bits, _permutation(key, b"diffuse-%d" % r, bits.shape[1]), axis=1)
    return np.packbits(out, axis=1)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _uniform(seeds: np.ndarray, m: int) -> np.ndarray:
    """(n, m) uniforms in [0, 1) from a splitmix64 stream per row seed: vectorised and deterministic."""
    with np.errstate(over="ignore"):
        x = seeds[:, None] + _GOLDEN * np.arange(1, m + 1, dtype=np.uint64)[None, :]
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def blip(packed: np.ndarray, rate: float, key: bytes) -> np.ndarray:
    """Randomised response: each bit flipped with probability `rate`, the flips drawn from a
    stream keyed by the secret and seeded by the row's own bits."""
    packed = np.asarray(packed, dtype=np.uint8)
    if len(packed) == 0:
        return packed
    seeds = np.array([int.from_bytes(hmac.digest(key, row.tobytes(), hashlib.sha256)[:8], "big")
                      for row in packed], dtype=np.uint64)
    bits = _bits(packed)
    flips = _uniform(seeds, bits.shape[1]) < rate
    return np.packbits(bits ^ flips, axis=1)
