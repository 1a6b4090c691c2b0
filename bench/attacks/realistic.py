"""Attacks on the realistic population (bench.synth.realistic, ``--realism cn``), where names
have China's frequencies: surnames at national shares, given names by cohort and sex.

The attacker is the coordinator: it holds the population department's filters, knows the
schema and the hardening (Kerckhoffs), and has a public census (names with sex and birth
year of another population, eight times the target's size, another seed). For the sex
attack it also knows the sex of a few of the target's records (``KNOWN_SHARE``: people it
knows, its own staff); never the secret.

    complement_pairs   positions j, k with bit j != bit k in every filter: the complement
                       pairs `balance` hides under its secret permutation. Found from the
                       filters alone; the attacker then keeps the rarer position of each
                       pair and attacks the half-length filter underneath (``unbalance``).
    surname_clique     per position, its `name` field's number of hashes of most correlated
                       positions (phi) form a clique: one name character's positions. Cliques
                       ranked by support are aligned with the census' surnames ranked by
                       frequency where the shares agree; a record is given the surname of
                       every clique it holds in full.
    sex_classifier     logistic regression on the bits, trained on the known records.
    full_name          the position and pattern attacks of bench.attacks.methods with the
                       realistic census, on the un-balanced filters.

Scoring (against the target's truth; evaluation only): *surname disclosure* is the share of
records given their true surname by a clique whose records are the records with that surname
(F1 >= 0.8). *Sex* is the classifier's accuracy on the records it was not trained on, against
naming everyone the commoner sex. *Full name* is the best re-identification rate of the
name attacks against naming everyone the target's commonest name.

    run_realistic(persons=5000, seed=0, hardening=None) -> dict
    python -m bench.attacks --realism cn --persons 5000 [--hardening none]
"""
from __future__ import annotations

import secrets
import time
from dataclasses import replace

import numpy as np
from sklearn.linear_model import LogisticRegression

from agents.hardening import HardenedEncoder
from agents.normalise import normalise_record
from bench.attacks.census import Census
from bench.attacks.encodings import fedlink_tokens, salted_tokens
from bench.attacks.methods import CORRECT_F1, pattern_mining_attack, position_frequency_attack, score
from bench.synth.realistic import build_cn, render_department_cn
from fedlink.schema import LinkageSchema, schema_from_dict

PROJECT_ID = "attack-bench-cn"
KNOWN_SHARE = 0.02  # the records whose sex the attacker knows
CLIQUE_PHI = 0.05  # the least mean phi within a clique


def _population(persons: int, seed: int, department: str = "population"):
    """One department's records as the agent normalises them, and each record's true
    (full name, surname, sex, birth year)."""
    cw = build_cn(persons, seed)
    frame, idx, _ = render_department_cn(cw, department, seed)
    features = [normalise_record(r) for r in frame.astype(str).to_dict("records")]
    p = cw.world.persons.iloc[idx]
    truth = {"name": p["name"].tolist(), "surname": cw.world.fam[idx].tolist(), "sex": p["sex"].tolist(),
             "year": [b[:4] for b in p["birth_date"].tolist()]}
    return features, truth


def complement_pairs(bits: np.ndarray) -> list[tuple[int, int]]:
    """Pairs of positions that differ in every filter (each column matched to its inverse)."""
    cols = {np.packbits(bits[:, j]).tobytes(): j for j in range(bits.shape[1])}
    pairs = []
    for j in range(bits.shape[1]):
        k = cols.get(np.packbits(1 - bits[:, j]).tobytes())
        if k is not None and j < k:
            pairs.append((j, k))
    return pairs


def unbalance(bits: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """The filter under a balanced one: of each complement pair the rarer position (a Bloom
    filter's bits are set less than half the time; its complement's more). Without pairs
    (twin: the complement is of the record under other keys) every position set more than
    half the time is taken for a complement's and inverted, so its token's positions
    correlate positively with the first half's again."""
    if not pairs:
        return np.where(bits.mean(axis=0) > 0.5, 1 - bits, bits).astype(bits.dtype)
    keep = [j if bits[:, j].mean() <= bits[:, k].mean() else k for j, k in pairs]
    return bits[:, keep]


def _phi(bits: np.ndarray) -> np.ndarray:
    x = bits.astype(np.float32)
    freq = x.mean(axis=0)
    joint = (x.T @ x) / len(x)
    sd = np.sqrt(freq * (1 - freq)) + 1e-9
    phi = (joint - np.outer(freq, freq)) / np.outer(sd, sd)
    np.fill_diagonal(phi, 0.0)
    return phi


def _grow(phi: np.ndarray, p: int, size: int, taken: np.ndarray) -> np.ndarray:
    """Greedy clique from p: add the free position whose least phi to the group is largest."""
    group = [p]
    least = phi[p].copy()
    least[taken] = -1.0
    least[p] = -1.0
    while len(group) < size:
        q = int(least.argmax())
        if least[q] <= 0:
            break
        group.append(q)
        least = np.minimum(least, phi[q])
        least[group] = -1.0
    return np.sort(np.array(group))


def surname_cliques(bits: np.ndarray, census_surnames: list[str], size: int, *, min_phi: float = CLIQUE_PHI,
                    min_support: int | None = None) -> dict[str, np.ndarray]:
    """Cliques of `size` positions set together, aligned with census surnames by frequency."""
    n = len(bits)
    min_support = min_support or max(8, n // 400)
    phi = _phi(bits)
    cliques: list[np.ndarray] = []
    taken = np.zeros(bits.shape[1], dtype=bool)
    for p in np.argsort(-np.sort(phi, axis=1)[:, -(size - 1):].mean(axis=1)):
        if taken[p]:
            continue
        group = _grow(phi, int(p), size, taken)
        inner = phi[np.ix_(group, group)]
        if len(group) < size or inner.sum() / (size * (size - 1)) < min_phi:
            continue
        cliques.append(group)
        taken[group] = True
    support = [int(bits[:, g].all(axis=1).sum()) for g in cliques]
    ranked = [cliques[i] for i in np.argsort(support)[::-1] if support[i] >= min_support]
    counts: dict[str, int] = {}
    for s in census_surnames:
        counts[s] = counts.get(s, 0) + 1
    names = sorted(counts, key=lambda s: -counts[s])
    out = {}
    for g, s in zip(ranked, names):
        share = bits[:, g].all(axis=1).mean()
        if 0.67 <= share / (counts[s] / len(census_surnames)) <= 1.5:
            out[s] = g
    return out


def surname_disclosure(bits: np.ndarray, cliques: dict[str, np.ndarray], surnames: list[str]) -> dict:
    truth = np.array(surnames, dtype=object)
    disclosed = np.zeros(len(bits), dtype=bool)
    correct = []
    for s, g in cliques.items():
        held = bits[:, g].all(axis=1)
        true = truth == s
        f1 = 2 * int((held & true).sum()) / max(1, int(held.sum() + true.sum()))
        if f1 >= CORRECT_F1:
            correct.append({"surname": s, "share": round(float(true.mean()), 4), "f1": round(f1, 3)})
            disclosed |= held & true
    return {"cliques": len(cliques), "learned_correctly": correct, "surname_disclosure": float(disclosed.mean())}


def sex_attack(bits: np.ndarray, sexes: list[str], known_share: float = KNOWN_SHARE, seed: int = 0) -> dict:
    y = np.array([s == "F" for s in sexes])
    rng = np.random.default_rng(seed)
    known = np.zeros(len(y), dtype=bool)
    known[rng.choice(len(y), max(20, int(known_share * len(y))), replace=False)] = True
    model = LogisticRegression(C=1.0, max_iter=2000).fit(bits[known], y[known])
    accuracy = float((model.predict(bits[~known]) == y[~known]).mean())
    commoner = float(max(y[~known].mean(), 1 - y[~known].mean()))
    return {"known_records": int(known.sum()), "accuracy": accuracy, "commoner_sex": commoner,
            "advantage": accuracy - commoner}


def full_name_attacks(bits: np.ndarray, truth: dict, census: Census) -> dict:
    packed = np.packbits(bits, axis=1)
    out = {}
    for name, attack in (("position_frequency", position_frequency_attack), ("pattern_mining", pattern_mining_attack)):
        guesses, diag = attack(packed, census)
        out[name] = {**score(guesses, truth["name"]), "tokens_learned": diag["tokens_learned"]}
    names = truth["name"]
    top = max(set(names), key=names.count)
    out["commonest_name"] = {"name": top, "share": names.count(top) / len(names)}
    best = max(out[a]["reidentification_rate"] for a in ("position_frequency", "pattern_mining"))
    out["advantage"] = best - out["commonest_name"]["share"]
    return out


def run_realistic(persons: int = 5000, seed: int = 0, hardening: str | None = None, *,
                  census_persons: int | None = None, census_seed: int | None = None,
                  without: tuple[str, ...] = (), comparison: str = "record",
                  id_segment_bits: int | None = None) -> dict:
    """Every realistic attack on the population extract of a `persons`-person realistic world,
    encoded with the default schema of `comparison` less the fields named in `without`
    (`id_segment_bits`: the default's unless given)."""
    t0 = time.perf_counter()
    schema = schema_from_dict({"comparison": comparison, "hardening": hardening or LinkageSchema().hardening})
    schema = replace(schema, fields=tuple(f for f in schema.fields if f.name not in without))
    if id_segment_bits is not None:
        schema = replace(schema, id_segment_bits=id_segment_bits)
    features, truth = _population(persons, seed)
    census_world = build_cn(census_persons or 8 * persons, seed + 7919 if census_seed is None else census_seed)
    census_surnames = census_world.world.fam.tolist()
    tokeniser = salted_tokens if schema.hardening == "salt" else fedlink_tokens
    cp = census_world.world.persons
    census = Census(cp["name"].tolist(), [b[:4] for b in cp["birth_date"]], tokeniser, True)
    filters = HardenedEncoder(schema, secrets.token_bytes(32), PROJECT_ID).encode(features)
    bits = np.unpackbits(filters, axis=1)
    pairs = complement_pairs(bits)
    raw = unbalance(bits, pairs)
    name_hashes = next(f.hashes for f in schema.fields if f.name == "name")
    cliques = surname_cliques(raw, census_surnames, name_hashes)
    return {"persons": persons, "seed": seed, "hardening": schema.hardening, "without": list(without),
            "comparison": comparison, "id_segment_bits": schema.id_segment_words() * 64,
            "records": len(bits),
            "complement_pairs": {"found": len(pairs), "of": bits.shape[1] // 2},
            "surname": surname_disclosure(raw, cliques, truth["surname"]),
            "sex": sex_attack(bits, truth["sex"], seed=seed),
            "full_name": full_name_attacks(raw, truth, census),
            "seconds": round(time.perf_counter() - t0, 2)}
