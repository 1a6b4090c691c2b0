"""Splink on DuckDB: the best plaintext linkage, configured as an expert would, on the
fields fedlink encodes (normalised the same way, in the clear).

Runs in the benchmark-only environment (scripts/bench-env) and imports nothing of
fedlink. Reads what bench/baselines.py wrote (features/<department>.csv, fields.json);
writes links-splink.csv (department, record_id, cluster_id) and prints its timing and
the parameters it learned as JSON.

* link_only across the departments (a register holds a person once);
* comparison levels per field: names (characters and pinyin) exact, Jaro-Winkler 0.92
  and 0.80, with term-frequency adjustments (agreeing on 欧阳翠花 says more than on
  王伟); the birth date exact, one character off, within a month, a year, ten years;
  the resident ID exact, Damerau-Levenshtein 1 and 2 (a mistyped digit, a transposition);
  sex exact; the address exact, Jaro-Winkler 0.9 and 0.7;
* a blank field is null: no evidence either way (Splink's null level);
* m and u: u by random sampling, m by EM over two blocking passes (on the birth date,
  then on the pinyin name) so every field's m is learned where it was not blocked on;
  the prior from the pairs that agree on the ID, at an assumed recall of 0.9;
* candidate pairs: agreement on any one of ID, birth date, name, pinyin name, address,
  the ID's birth-date digits, or pinyin + birth year (recall first: EM then sorts);
* links at match probability 0.5 (the Bayes decision of the learned model, no truth),
  grouped best first so a person has at most one record per department.

    python -m bench.baselines_splink WORKDIR
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from bench.baselines_plain import group

THRESHOLD = 0.5


def read(workdir: Path) -> dict[str, pd.DataFrame]:
    frames = {}
    for path in sorted((workdir / "features").glob("*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frames[path.stem] = frame.replace("", None)
    return frames


def settings() -> SettingsCreator:
    names = [cl.JaroWinklerAtThresholds(f, [0.92, 0.8]).configure(term_frequency_adjustments=True)
             for f in ("name", "name_pinyin")]
    return SettingsCreator(
        link_type="link_only",
        unique_id_column_name="record_id",
        comparisons=[
            *names,
            cl.DateOfBirthComparison("birth_date", input_is_string=True, datetime_metrics=["month", "year", "year"],
                                     datetime_thresholds=[1, 1, 10], invalid_dates_as_null=True),
            cl.DamerauLevenshteinAtThresholds("resident_id", [1, 2]),
            cl.ExactMatch("sex"),
            cl.JaroWinklerAtThresholds("address", [0.9, 0.7]),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("resident_id"), block_on("birth_date"), block_on("name"), block_on("name_pinyin"),
            block_on("address"), block_on("substr(resident_id, 7, 8)"),
            block_on("name_pinyin", "substr(birth_date, 1, 4)"),
        ],
        retain_intermediate_calculation_columns=False,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    args = ap.parse_args()
    frames = read(args.workdir)
    t0 = time.perf_counter()
    linker = Linker(list(frames.values()), settings(), db_api=DuckDBAPI(), input_table_aliases=list(frames))
    linker.training.estimate_probability_two_random_records_match([block_on("resident_id")], recall=0.9)
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("birth_date"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("name_pinyin"))
    pairs = linker.inference.predict(threshold_match_probability=THRESHOLD).as_pandas_dataframe()
    links = [(p, da, ra, db, rb) for p, da, ra, db, rb in zip(
        pairs["match_probability"], pairs["source_dataset_l"], pairs["record_id_l"], pairs["source_dataset_r"],
        pairs["record_id_r"])]
    clusters = group({d: f.set_index("record_id") for d, f in frames.items()}, links)
    seconds = time.perf_counter() - t0
    clusters.to_csv(args.workdir / "links-splink.csv", index=False)
    print(json.dumps({"seconds": round(seconds, 2), "scored_pairs": len(pairs), "threshold": THRESHOLD}))


if __name__ == "__main__":
    main()
