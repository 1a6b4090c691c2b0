"""clkhash 0.18.3 + anonlink 0.15.3 on FEBRL, as clkhash's own tutorial does it.

Runs in the benchmark-only environment (scripts/bench-env) and imports nothing
of fedlink. The schema is the one clkhash's Python API tutorial
(docs/tutorial_api.ipynb) settles on for FEBRL4 after reducing the address
weights: bigrams of given_name and surname (200 bits each), positional
unigrams of street_number, postcode and date_of_birth (100, 100, 200), bigrams
of address_1, address_2, suburb and state (100 each), soc_sec_id ignored;
1024-bit CLKs, anonlink's all-pairs candidate generation and greedy solver.
The tutorial's threshold is 0.8 (it notes lower ones found with the truth).

    python -m bench.baselines_clk SCENARIO --departments population,civil_affairs --thresholds 0.8,0.75
    python -m bench.baselines_clk FEATURES_DIR --features --thresholds 0.8,0.75 --out FEATURES_DIR

The second form links the six departments of a synthetic scenario on the fields fedlink
encodes (features_schema), all against all with anonlink's multi-party solver.
"""
from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import anonlink
import pandas as pd
from clkhash import clk
from clkhash.comparators import NgramComparison
from clkhash.field_formats import (BitsPerFeatureStrategy, FieldHashingProperties, Ignore, IntegerSpec,
                                   MissingValueSpec, StringSpec)
from clkhash.schema import Schema

COLUMNS = ["rec_id", "given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode",
           "state", "date_of_birth", "soc_sec_id"]


def tutorial_schema() -> Schema:
    def props(n, positional, bits, missing=False):
        return FieldHashingProperties(comparator=NgramComparison(n, positional),
                                      strategy=BitsPerFeatureStrategy(bits),
                                      missing_value=MissingValueSpec(sentinel="") if missing else None)
    fields = [
        Ignore("rec_id"),
        StringSpec("given_name", props(2, False, 200)),
        StringSpec("surname", props(2, False, 200)),
        IntegerSpec("street_number", props(1, True, 100, missing=True)),
        StringSpec("address_1", props(2, False, 100)),
        StringSpec("address_2", props(2, False, 100)),
        StringSpec("suburb", props(2, False, 100)),
        IntegerSpec("postcode", props(1, True, 100)),
        StringSpec("state", props(2, False, 100)),
        IntegerSpec("date_of_birth", props(1, True, 200, missing=True)),
        Ignore("soc_sec_id"),
    ]
    return Schema(fields, 1024)


def encode(path: Path, schema: Schema) -> tuple[list, list[str]]:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)[COLUMNS]
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    buf.seek(0)
    return clk.generate_clk_from_csv(buf, "a secret shared by the two parties", schema, progress_bar=False), list(frame["rec_id"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", type=Path)
    ap.add_argument("--departments", default="population,civil_affairs")
    ap.add_argument("--thresholds", default="0.8")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--features", action="store_true",
                    help="SCENARIO is a folder of exported features (all departments, features_schema)")
    args = ap.parse_args()
    if args.features:
        print(json.dumps(link_features(args.scenario, [float(t) for t in args.thresholds.split(",")])))
        return
    da, db = args.departments.split(",")
    schema = tutorial_schema()
    t0 = time.perf_counter()
    (clks_a, ids_a), (clks_b, ids_b) = encode(args.scenario / f"{da}.csv", schema), encode(
        args.scenario / f"{db}.csv", schema)
    encode_s = time.perf_counter() - t0
    results = {}
    for threshold in (float(t) for t in args.thresholds.split(",")):
        t1 = time.perf_counter()
        candidates = anonlink.candidate_generation.find_candidate_pairs(
            [clks_a, clks_b], anonlink.similarities.dice_coefficient, threshold)
        solution = anonlink.solving.greedy_solve(candidates)
        link_s = time.perf_counter() - t1
        rows = [(da, rid, f"a{i}") for i, rid in enumerate(ids_a)] + [(db, rid, f"b{j}") for j, rid in enumerate(ids_b)]
        cluster = {(da, ids_a[i]): f"a{i}" for i in range(len(ids_a))}
        for group in solution:
            (_, i), (_, j) = sorted(group)
            cluster[(db, ids_b[j])] = f"a{i}"
        rows = [(d, rid, cluster.get((d, rid), c)) for d, rid, c in rows]
        path = args.out / f"links-clkhash-{threshold}.csv"
        pd.DataFrame(rows, columns=["department", "record_id", "cluster_id"]).to_csv(path, index=False)
        results[str(threshold)] = {"links_csv": str(path), "encode_s": round(encode_s, 2),
                                   "link_s": round(link_s, 2), "candidates": len(candidates[0])}
    print(json.dumps(results))



def features_schema() -> Schema:
    """For the six-department scenarios: the fields fedlink encodes, normalised as fedlink
    normalises them (bench/baselines.py export_features), in clkhash's usual set-up:
    bigrams of the names and the address, positional unigrams of the date and the ID,
    a blank field hashed as missing."""
    def props(n, positional, bits):
        return FieldHashingProperties(comparator=NgramComparison(n, positional), strategy=BitsPerFeatureStrategy(bits),
                                      missing_value=MissingValueSpec(sentinel=""))
    fields = [Ignore("record_id"), StringSpec("name", props(2, False, 200)),
              StringSpec("name_pinyin", props(2, False, 200)), StringSpec("sex", props(1, False, 20)),
              StringSpec("birth_date", props(1, True, 200)), StringSpec("resident_id", props(1, True, 200)),
              StringSpec("address", props(2, False, 150))]
    return Schema(fields, 1024)


def link_features(workdir: Path, thresholds: list[float]) -> dict:
    """Every department against every other (anonlink's multi-party candidates and greedy
    solver); writes links-clkhash-<t>.csv under workdir."""
    schema = features_schema()
    t0 = time.perf_counter()
    depts, clks, ids = [], [], []
    for path in sorted((workdir / "features").glob("*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        buf = io.StringIO()
        frame[[f.identifier for f in schema.fields]].to_csv(buf, index=False)
        buf.seek(0)
        clks.append(clk.generate_clk_from_csv(buf, "a secret shared by the parties", schema, progress_bar=False))
        depts.append(path.stem)
        ids.append(list(frame["record_id"]))
    encode_s = time.perf_counter() - t0
    results = {}
    for threshold in thresholds:
        t1 = time.perf_counter()
        candidates = anonlink.candidate_generation.find_candidate_pairs(
            clks, anonlink.similarities.dice_coefficient, threshold)
        solution = anonlink.solving.greedy_solve(candidates)
        cluster = {(depts[d], ids[d][r]): f"{depts[d]}:{ids[d][r]}" for d in range(len(depts)) for r in range(len(ids[d]))}
        for n, members in enumerate(solution):
            for d, r in members:
                cluster[(depts[d], ids[d][r])] = f"g{n}"
        path = workdir / f"links-clkhash-{threshold}.csv"
        pd.DataFrame([(d, r, c) for (d, r), c in cluster.items()],
                     columns=["department", "record_id", "cluster_id"]).to_csv(path, index=False)
        results[str(threshold)] = {"links_csv": str(path), "encode_s": round(encode_s, 2),
                                   "link_s": round(time.perf_counter() - t1, 2), "candidates": len(candidates[0])}
    return results


if __name__ == "__main__":
    main()
