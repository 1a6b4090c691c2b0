"""The attacks, each from filters and a census to a guessed name (or None) per record, and
the scoring of what they learned against the target's truth."""
from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from bench.attacks.census import Census

POSITION_PHI = 0.4  # positions correlated above this are taken for one token's
CORRECT_F1 = 0.8  # a learned token's records vs the records that have it
INFORMATIVE_SHARE = 0.10  # a token this rare narrows a person down (a surname)


def _bits(filters: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.asarray(filters, dtype=np.uint8), axis=1)


def score(guesses: Sequence[str | None], truth: Sequence[str]) -> dict:
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
