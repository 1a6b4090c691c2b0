"""Running every attack on every target encoding of one department's extract."""
from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from agents.hardening import HardenedEncoder
from agents.normalise import normalise_name, normalise_record
from bench.attacks.census import Census
from bench.attacks.encodings import fedlink_tokens, salted_tokens, weak_encode, weak_tokens
from bench.attacks.methods import (
    dictionary_attack,
    frequency_attack,
    pattern_mining_attack,
    position_frequency_attack,
    score,
    token_disclosure,
)
from bench.synth import build, render_department
from fedlink.schema import LinkageSchema

PROJECT_ID = "attack-bench"
ATTACKS = ("frequency_name", "frequency_name_year", "position_frequency", "pattern_mining", "dictionary")


def _identities(people) -> list[tuple[str, str, str]]:
    """Who each row is: (name, birth date, resident ID), as the population truth holds them."""
    return list(zip(people["name"], people["birth_date"], people["resident_id"]))


def _target(persons: int, seed: int, department: str):
    """One department's extract as the agent normalises it; each record's true name, birth year
    and identity."""
    world = build(persons, seed)
    frame, idx = render_department(world, department, seed)
    rows = frame.astype(str).to_dict("records")
    features = [normalise_record(r) for r in rows]
    truth = world.persons["name"].to_numpy()[idx].tolist()
    years = [b[:4] for b in world.persons["birth_date"].to_numpy()[idx].tolist()]
    return features, truth, years, _identities(world.persons.iloc[idx])


def _census(persons: int, seed: int) -> tuple[list[str], list[str], set]:
    """The census's names and birth years, and who is in it (to check it is another population)."""
    p = build(persons, seed).persons
    return p["name"].tolist(), [b[:4] for b in p["birth_date"].tolist()], set(_identities(p))


def attack_encoding(filters: np.ndarray, truth: Sequence[str], truth_years: Sequence[str], cnames: Sequence[str],
                    cyears: Sequence[str], tokeniser, use_year: bool, public_encode=None) -> dict:
    """Every attack of ATTACKS that applies to this encoding; a score per attack."""
    out = {}
    out["frequency_name"] = score(frequency_attack(filters, cnames), truth)
    pairs = frequency_attack(filters, list(zip(cnames, cyears)))
    out["frequency_name_year"] = score([p[0] if p else None for p in pairs], truth)
    census = Census(cnames, cyears, tokeniser, use_year)
    truth_tokens = [tokeniser(n, y) for n, y in zip(truth, truth_years)]
    for name, attack in (("position_frequency", position_frequency_attack), ("pattern_mining", pattern_mining_attack)):
        guesses, diag = attack(filters, census)
        learned = token_disclosure(filters, diag.pop("positions"), truth_tokens)
        out[name] = {**score(guesses, truth), **diag, **learned}
    if public_encode is not None:
        out["dictionary"] = score(dictionary_attack(filters, cnames, public_encode), truth)
    return out


def run_attacks(persons: int = 5000, seed: int = 0, hardening: str | None = None, *,
                department: str = "population", census_persons: int | None = None,
                census_seed: int | None = None, targets: Sequence[str] = ("weak_unkeyed_names", "fedlink")) -> dict:
    """Run every attack on every target encoding of one department's extract; rates per attack."""
    t0 = time.perf_counter()
    hardening = hardening or LinkageSchema().hardening  # by default what an agent uploads
    census_persons = census_persons or 8 * persons
    census_seed = seed + 7919 if census_seed is None else census_seed
    features, truth, years, who = _target(persons, seed, department)
    cnames, cyears, census_people = _census(census_persons, census_seed)
    secret = secrets.token_bytes(32)  # the project secret: the attacker never sees it
    result = {"persons": persons, "seed": seed, "department": department, "records": len(truth),
              "census_persons": census_persons, "census_seed": census_seed,
              # target records whose person is in the census: 0 when the census is another population
              "census_shared_records": sum(w in census_people for w in who), "hardening": hardening,
              "attacks": {}}
    for target in targets:
        if target == "weak_unkeyed_names":
            # The control stays unhardened: it shows the attacks have teeth.
            filters = weak_encode([f["name"] for f in features])
            tokeniser, use_year = weak_tokens, False
            public = lambda names: weak_encode([normalise_name(x) for x in names])  # the hash is public
        elif target == "fedlink":
            schema = replace(LinkageSchema(), hardening=hardening)
            filters = HardenedEncoder(schema, secret, PROJECT_ID).encode(features)
            tokeniser, use_year = (salted_tokens if hardening == "salt" else fedlink_tokens), True
            public = None  # the positions depend on the project secret: no dictionary
        else:
            raise ValueError(f"unknown target {target!r}")
        result["attacks"][target] = attack_encoding(filters, truth, years, cnames, cyears, tokeniser, use_year,
                                                     public)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result
