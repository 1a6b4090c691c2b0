"""Attacks on Bloom-filter encodings, played as the coordinator.

The attacker holds one department's uploaded filters and public knowledge
only: the linkage schema (which fields, q-gram lengths; a project's TOML is
not secret) and a census, i.e. name and birth-year frequency tables of the
population. The census here is a SEPARATE synthetic population (another
seed, by default four times the size), never the target's own truth and
never the project secret.

Attacks (every one runs on every target; ``ATTACKS`` names them)
  * frequency_name, frequency_name_year: frequency attack on whole filters,
    Kuzu et al. (2011) style. Identical filters are grouped, the groups
    sorted by size, and the i-th largest group is named after the i-th most
    frequent census value (full name, or name + birth year). Only groups of
    two or more records are aligned (a singleton's rank carries no
    frequency information).
  * position_frequency: frequency attack on bit positions. Positions that
    are set together far more often than chance (phi correlation) are
    grouped as the positions of one token; the groups, ranked by how many
    filters have all their positions, are aligned with the census tokens
    ranked by frequency; records are then named by signature (below).
  * pattern_mining: Christen et al. (2017/2018) style. Bit positions that are
    set together in a block of filters form a pattern; the largest such
    block is aligned with the most frequent public token (q-gram, or birth
    year token) by frequency, and the filters are split into "has it" /
    "has it not", recursively, so the next most frequent token of each part
    is found the same way.
  * dictionary (weak control only): encode every census name with the
    public, unkeyed encoding and look each filter up. A keyed encoding
    needs the project secret for this.

Signature step: each filter is reduced to which learned tokens it has and
has not, and named when exactly one census name has that signature. A record
is re-identified when the attack names its true name (the person's name in
the truth table) and only that name. Rate = correct / records.

Learned tokens are checked too (evaluation only, against the target's
truth): a token is learned *correctly* when the records whose filters hold
its learned positions are the records that have it (F1 >= 0.8, and better
than saying every record has it). **Attribute disclosure** = the share of
records for which a correctly learned token that at most 10 % of records
carry (a surname, not a pinyin bigram half the names have) is correctly
attributed: a partial re-identification, which full-name re-identification
misses when full names are rare.

Targets
  * weak_unkeyed_names: a deliberately weak control, a plain Bloom filter of
    the name's character bigrams (padded) with a known unkeyed double hash
    (MD5 / SHA-1, Schnell 2009 style), 1024 bits, 20 hashes per bigram.
    The attacks must break it, or they prove nothing.
  * fedlink: what a fedlink agent uploads with the default schema and the
    hardening asked for (agents.hardening, the same code the agent runs).
    The attacker knows the hardening (Kerckhoffs): against ``salt`` its
    census tokens are salted with the birth year too.

    run_attacks(persons=5000, seed=0, hardening=None) -> dict   # None: the default
    python -m bench.attacks --persons 5000 [--hardening salt]
    python -m bench.attacks --table SCENARIO --out DIR   # docs/hardening.md's table
"""
from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from agents.hardening import hardened_encoder
from agents.normalise import name_pinyin, normalise_name, normalise_record
from bench.synth import build, render_department
from fedlink.schema import LinkageSchema

PROJECT_ID = "attack-bench"
WEAK_BITS = 1024
WEAK_HASHES = 20
ATTACKS = ("frequency_name", "frequency_name_year", "position_frequency", "pattern_mining", "dictionary")
# The options docs/hardening.md compares, in its order.
TABLE_OPTIONS = ("none", "salt", "balance", "xor", "blip-0.01", "blip-0.02", "blip-0.05")
POSITION_PHI = 0.4  # positions correlated above this are taken for one token's
CORRECT_F1 = 0.8  # a learned token's records vs the records that have it
INFORMATIVE_SHARE = 0.10  # a token this rare narrows a person down (a surname)


def _bits(filters: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.asarray(filters, dtype=np.uint8), axis=1)


# --------------------------------------------------------------------------- encodings


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


# --------------------------------------------------------------------------- census


class Census:
    """Public frequency tables: (name, birth year) entities with counts, and their tokens."""

    def __init__(self, names: Sequence[str], years: Sequence[str], tokeniser: Callable[[str, str], set[str]],
                 use_year: bool):
        pairs: dict[tuple[str, str], int] = {}
        for n, y in zip(names, years):
            key = (n, y if use_year else "")
            pairs[key] = pairs.get(key, 0) + 1
        self.entities = list(pairs)
        self.weights = np.array([pairs[e] for e in self.entities], dtype=np.float64)
        self.names = np.array([e[0] for e in self.entities], dtype=object)
        vocab: dict[str, int] = {}
        rows, cols = [], []
        for i, (n, y) in enumerate(self.entities):
            for t in tokeniser(n, y):
                rows.append(i)
                cols.append(vocab.setdefault(t, len(vocab)))
        self.tokens = list(vocab)
        self.matrix = sparse.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)),
                                        shape=(len(self.entities), len(vocab)))
        self.matrix_csc = self.matrix.tocsc()

    def has(self, token: int) -> np.ndarray:
        col = np.zeros(len(self.entities), dtype=bool)
        col[self.matrix_csc[:, token].indices] = True
        return col


# --------------------------------------------------------------------------- attacks


def _score(guesses: Sequence[str | None], truth: Sequence[str]) -> dict:
    made = sum(g is not None for g in guesses)
    correct = sum(g is not None and g == t for g, t in zip(guesses, truth))
    n = len(truth)
    return {"records": n, "guesses": made, "correct": correct,
            "reidentification_rate": correct / n if n else 0.0,
            "precision": correct / made if made else 0.0}


def frequency_attack(filters: np.ndarray, census_values: Sequence, min_group: int = 2) -> list:
    """Name the i-th largest group of identical filters after the i-th most frequent census value."""
    filters = np.asarray(filters, dtype=np.uint8)
    if len(filters) == 0:
        return []
    _, inverse, counts = np.unique(filters, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    groups = [g for g in np.argsort(-counts, kind="stable") if counts[g] >= min_group]
    values: dict = {}
    for v in census_values:
        values[v] = values.get(v, 0) + 1
    ranked = sorted(values, key=lambda v: -values[v])
    named = {int(g): ranked[i] for i, g in enumerate(groups[:len(ranked)])}
    return [named.get(int(g)) for g in inverse]


def dictionary_attack(filters: np.ndarray, census_names: Sequence[str], encode) -> list:
    """Encode every census name with the (known, unkeyed) encoding and look each filter up.
    Only possible when the attacker can compute the encoding: a keyed encoding needs the secret."""
    names = sorted(set(census_names))
    table: dict[bytes, set] = {}
    for name, f in zip(names, encode(names)):
        table.setdefault(f.tobytes(), set()).add(name)
    out = []
    for f in np.asarray(filters, dtype=np.uint8):
        cands = table.get(f.tobytes())
        out.append(next(iter(cands)) if cands and len(cands) == 1 else None)
    return out


def pattern_mining_attack(filters: np.ndarray, census: Census, *, tau: float = 0.9, min_pattern: int = 3,
                          min_support: int | None = None, max_nodes: int = 600) -> tuple[list, dict]:
    """Christen et al. style pattern mining; returns (guessed name or None per record, diagnostics)."""
    bits = _bits(filters).astype(bool)
    n, m = bits.shape
    if min_support is None:
        min_support = max(8, n // 400)
    known: dict[int, np.ndarray] = {}
    known_pos = np.zeros(m, dtype=bool)
    all_ents = np.ones(len(census.entities), dtype=bool)
    heap = [(-n, 0, np.arange(n), all_ents)]
    tick, nodes = 1, 0
    while heap and nodes < max_nodes:
        _, _, rows, ents = heapq.heappop(heap)
        nodes += 1
        if len(rows) < 2 * min_support or not ents.any():
            continue
        sub = bits[rows]
        inside = np.ones(len(rows), dtype=bool)
        pattern: list[int] = []
        blocked = known_pos.copy()
        while True:
            f = sub[inside].mean(axis=0)
            f[blocked] = -1.0
            p = int(f.argmax())
            if f[p] <= 0 or inside.sum() * f[p] < min_support:
                break
            if len(pattern) >= min_pattern and f[p] < tau:
                break
            pattern.append(p)
            blocked[p] = True
            inside &= sub[:, p]
        if len(pattern) < min_pattern:
            continue
        # The support of the pattern within this node, aligned with the most
        # frequent not yet learned token of the census entities of this node.
        w = census.weights * ents
        tf = census.matrix.T @ w / w.sum()
        for t in known:
            tf[t] = -1.0
        g = int(tf.argmax())
        support = inside.mean()
        if tf[g] <= 0 or not 0.5 <= support / tf[g] <= 2.0:
            continue
        # Positions set in (nearly) every filter of the block, besides the greedy path.
        full = sub[inside].mean(axis=0) >= tau
        full[known_pos] = False
        positions = np.flatnonzero(full)
        known[g] = positions
        known_pos[positions] = True
        has = census.has(g)
        for part, emask in ((rows[inside], ents & has), (rows[~inside], ents & ~has)):
            heapq.heappush(heap, (-len(part), tick, part, emask))
            tick += 1
    return signature_guesses(bits, census, known), {
        "tokens_learned": len(known), "nodes": nodes, "learned": [census.tokens[t] for t in list(known)[:20]],
        "positions": {census.tokens[t]: known[t].tolist() for t in known}}


def signature_guesses(bits: np.ndarray, census: Census, known: dict[int, np.ndarray]) -> list:
    """Name each record whose has / has-not signature over the learned tokens fits exactly one census name."""
    if not known:
        return [None] * len(bits)
    order = list(known)
    rec_sig = np.stack([bits[:, known[t]].all(axis=1) for t in order], axis=1)
    ent_sig = np.stack([census.has(t) for t in order], axis=1)
    by_sig: dict[bytes, set] = {}
    for i, s in enumerate(np.packbits(ent_sig, axis=1)):
        by_sig.setdefault(s.tobytes(), set()).add(census.names[i])
    guesses = []
    for s in np.packbits(rec_sig, axis=1):
        cands = by_sig.get(s.tobytes())
        guesses.append(next(iter(cands)) if cands and len(cands) == 1 else None)
    return guesses


def position_frequency_attack(filters: np.ndarray, census: Census, *, phi_min: float = POSITION_PHI,
                              min_support: int | None = None) -> tuple[list, dict]:
    """Frequency attack on bit positions: positions set together far above chance are one
    token's; such groups, ranked by support, are aligned with census tokens ranked by frequency."""
    bits = _bits(filters)
    n = len(bits)
    if min_support is None:
        min_support = max(8, n // 400)
    x = bits.astype(np.float32)
    freq = x.mean(axis=0)
    joint = (x.T @ x) / n
    sd = np.sqrt(freq * (1 - freq)) + 1e-9
    phi = (joint - np.outer(freq, freq)) / np.outer(sd, sd)
    np.fill_diagonal(phi, 0.0)
    _, label = connected_components(sparse.csr_matrix(phi > phi_min), directed=False)
    groups = [g for g in (np.flatnonzero(label == c) for c in np.unique(label)) if len(g) >= 2]
    support = np.array([bits[:, g].all(axis=1).sum() for g in groups], dtype=np.int64)
    ranked_groups = [groups[i] for i in np.argsort(-support, kind="stable") if support[i] >= min_support]
    tf = census.matrix.T @ census.weights / census.weights.sum()
    ranked_tokens = np.argsort(-tf, kind="stable")
    known: dict[int, np.ndarray] = {}
    for g, t in zip(ranked_groups, ranked_tokens):
        share = bits[:, g].all(axis=1).mean()
        if tf[t] > 0 and 0.5 <= share / tf[t] <= 2.0:  # aligned only where the frequencies agree
            known[int(t)] = g
    return signature_guesses(bits.astype(bool), census, known), {
        "position_groups": len(groups), "tokens_learned": len(known),
        "learned": [census.tokens[t] for t in list(known)[:20]],
        "positions": {census.tokens[t]: np.asarray(known[t]).tolist() for t in known}}


def token_disclosure(filters: np.ndarray, positions: dict[str, list[int]], truth_tokens: Sequence[set]) -> dict:
    """Which learned tokens are right, judged against the target's truth (module doc)."""
    bits = _bits(filters).astype(bool)
    n = len(bits)
    disclosed = np.zeros(n, dtype=bool)
    correct = []
    for token, pos in positions.items():
        predicted = bits[:, pos].all(axis=1) if len(pos) else np.zeros(n, dtype=bool)
        true = np.fromiter((token in s for s in truth_tokens), dtype=bool, count=n)
        share = float(true.mean())
        f1 = 2 * int((predicted & true).sum()) / max(1, int(predicted.sum() + true.sum()))
        if f1 >= CORRECT_F1 and f1 > 2 * share / (1 + share):
            correct.append({"token": token, "share": round(share, 4), "f1": round(f1, 3)})
            if share <= INFORMATIVE_SHARE:
                disclosed |= predicted & true
    return {"tokens_correct": len(correct), "learned_correctly": correct[:20], "attribute_disclosure": float(disclosed.mean())}


# --------------------------------------------------------------------------- harness


def _target(persons: int, seed: int, department: str):
    """One department's extract as the agent normalises it; each record's true name and birth year."""
    world = build(persons, seed)
    frame, idx = render_department(world, department, seed)
    rows = frame.astype(str).to_dict("records")
    features = [normalise_record(r) for r in rows]
    truth = world.persons["name"].to_numpy()[idx].tolist()
    years = [b[:4] for b in world.persons["birth_date"].to_numpy()[idx].tolist()]
    return features, truth, years


def _census(persons: int, seed: int) -> tuple[list[str], list[str]]:
    p = build(persons, seed).persons
    return p["name"].tolist(), [b[:4] for b in p["birth_date"].tolist()]


def attack_encoding(filters: np.ndarray, truth: Sequence[str], truth_years: Sequence[str], cnames: Sequence[str],
                    cyears: Sequence[str], tokeniser, use_year: bool, public_encode=None) -> dict:
    """Every attack of ATTACKS that applies to this encoding; a score per attack."""
    out = {}
    out["frequency_name"] = _score(frequency_attack(filters, cnames), truth)
    pairs = frequency_attack(filters, list(zip(cnames, cyears)))
    out["frequency_name_year"] = _score([p[0] if p else None for p in pairs], truth)
    census = Census(cnames, cyears, tokeniser, use_year)
    truth_tokens = [tokeniser(n, y) for n, y in zip(truth, truth_years)]
    for name, attack in (("position_frequency", position_frequency_attack), ("pattern_mining", pattern_mining_attack)):
        guesses, diag = attack(filters, census)
        learned = token_disclosure(filters, diag.pop("positions"), truth_tokens)
        out[name] = {**_score(guesses, truth), **diag, **learned}
    if public_encode is not None:
        out["dictionary"] = _score(dictionary_attack(filters, cnames, public_encode), truth)
    return out


def run_attacks(persons: int = 5000, seed: int = 0, hardening: str | None = None, *,
                department: str = "population", census_persons: int | None = None,
                census_seed: int | None = None, targets: Sequence[str] = ("weak_unkeyed_names", "fedlink")) -> dict:
    """Run every attack on every target encoding of one department's extract; rates per attack."""
    t0 = time.perf_counter()
    hardening = hardening or LinkageSchema().hardening  # by default what an agent uploads
    census_persons = census_persons or 8 * persons
    census_seed = seed + 7919 if census_seed is None else census_seed
    features, truth, years = _target(persons, seed, department)
    cnames, cyears = _census(census_persons, census_seed)
    secret = secrets.token_bytes(32)  # the project secret: the attacker never sees it
    result = {"persons": persons, "seed": seed, "department": department, "records": len(truth),
              "census_persons": census_persons, "census_seed": census_seed, "hardening": hardening,
              "attacks": {}}
    for target in targets:
        if target == "weak_unkeyed_names":
            # The control stays unhardened: it shows the attacks have teeth.
            filters = weak_encode([f["name"] for f in features])
            tokeniser, use_year = weak_tokens, False
            public = lambda names: weak_encode([normalise_name(x) for x in names])  # the hash is public
        elif target == "fedlink":
            schema = replace(LinkageSchema(), hardening=hardening)
            filters = hardened_encoder(schema, secret, PROJECT_ID).encode(features)
            tokeniser, use_year = (salted_tokens if hardening == "salt" else fedlink_tokens), True
            public = None  # the positions depend on the project secret: no dictionary
        else:
            raise ValueError(f"unknown target {target!r}")
        result["attacks"][target] = attack_encoding(filters, truth, years, cnames, cyears, tokeniser, use_year,
                                                     public)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result


# --------------------------------------------------------------------------- the hardening table


def hardening_table(scenario: Path, out: Path, persons: int, seed: int = 0,
                    options: Sequence[str] = TABLE_OPTIONS, secrets_per_option: int = 3) -> list[dict]:
    """Per option: pairwise F1 of `fedlink bench` on the scenario, and each attack's
    re-identification rate on the population extract of a `persons`-person world:
    the worst over ``secrets_per_option`` project secrets (what the attacks learn
    depends on where the secret puts the bits)."""
    from bench.harness import run_bench

    rows = []
    for option in options:
        schema = replace(LinkageSchema(), hardening=option)
        metrics = run_bench(scenario, Path(out) / option, project_overrides={"schema": schema})
        runs = [run_attacks(persons, seed, option, targets=("fedlink",))["attacks"]["fedlink"]
                for _ in range(secrets_per_option)]

        def worst(attack: str, key: str):
            return max(run[attack][key] for run in runs)

        attacks = list(runs[0])
        mined = [a for a in attacks if "tokens_correct" in runs[0][a]]
        rows.append({"hardening": option, "f1": metrics["links"]["f1"], "precision": metrics["links"]["precision"],
                     "recall": metrics["links"]["recall"], "secrets": secrets_per_option,
                     **{a: round(worst(a, "reidentification_rate"), 5) for a in attacks},
                     "tokens_learned": {a: worst(a, "tokens_learned") for a in mined},
                     "tokens_correct": {a: worst(a, "tokens_correct") for a in mined},
                     "learned_correctly": sorted({t["token"] for run in runs for a in mined
                                                  for t in run[a]["learned_correctly"]}),
                     "attribute_disclosure": max(worst(a, "attribute_disclosure") for a in mined)})
    return rows


def markdown(rows: list[dict]) -> str:
    attacks = [a for a in ATTACKS if a in rows[0]]
    base = next((r["f1"] for r in rows if r["hardening"] == "none"), None)
    mined = ("position_frequency", "pattern_mining")
    head = (["hardening", "F1", "F1 vs none"] + attacks
            + ["tokens learned / correct (position; pattern)", "attribute disclosure"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        delta = f"{r['f1'] - base:+.5f}" if base is not None else ""
        tokens = "; ".join(f"{r['tokens_learned'][a]} / {r['tokens_correct'][a]}" for a in mined)
        lines.append("| " + " | ".join([r["hardening"], f"{r['f1']:.5f}", delta]
                                       + [f"{100 * r[a]:.2f} %" for a in attacks]
                                       + [tokens, f"{100 * r['attribute_disclosure']:.2f} %"]) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.attacks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--persons", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hardening", default=None, help="none, salt, balance, xor, blip-R; default: the schema's")
    ap.add_argument("--department", default="population")
    ap.add_argument("--census-persons", type=int, default=None)
    ap.add_argument("--table", type=Path, default=None, metavar="SCENARIO",
                    help="measure every option: bench F1 on SCENARIO and every attack (docs/hardening.md)")
    ap.add_argument("--out", type=Path, default=Path("hardening-bench"), help="bench folders of --table")
    a = ap.parse_args(argv)
    if a.table:
        rows = hardening_table(a.table, a.out, a.persons, a.seed)
        (a.out / "hardening.json").write_text(json.dumps(rows, indent=2) + "\n")
        print(markdown(rows))
        return
    r = run_attacks(a.persons, a.seed, a.hardening, department=a.department, census_persons=a.census_persons)
    print(json.dumps(r, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
