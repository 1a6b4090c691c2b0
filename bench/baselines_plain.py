"""Plaintext baseline: recordlinkage on the raw (normalised) fields, no encoding.

Runs in the benchmark-only environment (scripts/bench-env) and imports nothing
of fedlink. Reads what bench/baselines.py wrote: one CSV of normalised fields
per department (record_id, then a column per field) and fields.json (each
field's kind). Writes links.csv (department, record_id, cluster_id) and prints
its timing as JSON.

The comparison is tuned the way a careful analyst would tune it on raw data:
blocking on every discriminating field (a record pair is compared if it
agrees exactly on any one of them), Jaro-Winkler for names, addresses and
places, Levenshtein for numbers (one wrong digit costs little), a date
comparison that gives credit for a day/month swap or one wrong component,
exact agreement for sex and state; the score is the mean similarity over the
fields both records have; links at or above the threshold are grouped best
first, one record per department per person.

    python -m bench.baselines_plain WORKDIR [--threshold 0.6]
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import recordlinkage
from recordlinkage.base import BaseCompareFeature

STRING_KINDS = {"name", "pinyin", "text", "address"}
NUMBER_KINDS = {"digits", "resident_id", "phone"}
EXACT_KINDS = {"sex"}


class DateSimilarity(BaseCompareFeature):
    """1 equal; 0.8 day and month swapped; 0.5 two of year, month, day equal; else 0."""

    def _compute_vectorized(self, s1, s2):
        y1, m1, d1 = s1.str[:4], s1.str[5:7], s1.str[8:10]
        y2, m2, d2 = s2.str[:4], s2.str[5:7], s2.str[8:10]
        equal = s1 == s2
        swapped = (y1 == y2) & (m1 == d2) & (d1 == m2)
        two = ((y1 == y2).astype(int) + (m1 == m2) + (d1 == d2)) >= 2
        return np.select([equal, swapped, two], [1.0, 0.8, 0.5], 0.0)


def read(workdir: Path) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    kinds = json.loads((workdir / "fields.json").read_text())
    frames = {}
    for path in sorted((workdir / "features").glob("*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False).set_index("record_id")
        frames[path.stem] = frame.replace("", np.nan)
    return frames, kinds


def blocking_keys(frames: dict[str, pd.DataFrame], kinds: dict[str, str]) -> list[str]:
    # A field that sets few records apart (sex, state) makes blocks of thousands.
    whole = pd.concat(frames.values())
    return [f for f in kinds if kinds[f] not in EXACT_KINDS and whole[f].nunique() >= 0.05 * len(whole)]


def score_pairs(a: pd.DataFrame, b: pd.DataFrame, kinds: dict[str, str], keys: list[str]) -> pd.Series:
    indexer = recordlinkage.Index()
    for key in keys:
        indexer.block(key)
    candidates = indexer.index(a, b)
    compare = recordlinkage.Compare(n_jobs=1)
    for field, kind in kinds.items():
        if kind in STRING_KINDS:
            compare.string(field, field, method="jarowinkler", label=field)
        elif kind in NUMBER_KINDS:
            compare.string(field, field, method="levenshtein", label=field)
        elif kind == "date":
            compare.add(DateSimilarity(field, field, label=field))
        else:
            compare.exact(field, field, label=field)
    sims = compare.compute(candidates, a, b)
    # Missing-aware mean: a blank field neither agrees nor disagrees.
    both = pd.DataFrame({f: a[f].reindex(sims.index.get_level_values(0)).notna().to_numpy()
                         & b[f].reindex(sims.index.get_level_values(1)).notna().to_numpy() for f in kinds},
                        index=sims.index)
    return (sims.where(both, 0.0).sum(axis=1) / both.sum(axis=1).clip(lower=1))


def group(frames: dict[str, pd.DataFrame], links: list[tuple[float, str, str, str, str]]) -> pd.DataFrame:
    """Best link first; two groups join only when no department is in both."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}
    depts: dict[tuple[str, str], set[str]] = {}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for d, frame in frames.items():
        for rid in frame.index:
            parent[(d, rid)] = (d, rid)
            depts[(d, rid)] = {d}
    for _, da, ra, db, rb in sorted(links, key=lambda x: -x[0]):
        x, y = find((da, ra)), find((db, rb))
        if x != y and not depts[x] & depts[y]:
            parent[y] = x
            depts[x] |= depts.pop(y)
    roots: dict[tuple[str, str], int] = {}
    rows = [(d, rid, roots.setdefault(find((d, rid)), len(roots))) for d, rid in parent]
    return pd.DataFrame(rows, columns=["department", "record_id", "cluster_id"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--threshold", type=float, default=0.6)
    args = ap.parse_args()
    frames, kinds = read(args.workdir)
    t0 = time.perf_counter()
    keys = blocking_keys(frames, kinds)
    links, candidates = [], 0
    for da, db in itertools.combinations(sorted(frames), 2):
        scores = score_pairs(frames[da], frames[db], kinds, keys)
        candidates += len(scores)
        kept = scores[scores >= args.threshold]
        links += [(s, da, ra, db, rb) for (ra, rb), s in kept.items()]
    clusters = group(frames, links)
    seconds = time.perf_counter() - t0
    clusters.to_csv(args.workdir / "links-plaintext.csv", index=False)
    print(json.dumps({"seconds": round(seconds, 2), "candidates": candidates, "blocking_keys": keys,
                      "threshold": args.threshold}))


if __name__ == "__main__":
    main()
