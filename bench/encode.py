"""Agent encoding rate against clkhash's, on the same records, on one core.

fedlink: normalise and encode from the extract frame exactly as the agent does
(agents.prepare: agents.normalise.feature_columns, then the project's hardened
encoder, default schema and hardening, in the agent's chunks). clkhash 0.18.3:
the same records' raw columns through a schema with the same fields
(bench/encode_clkhash.py) in the benchmark-only environment, with its default
validation of every value and without; it is handed the pinyin fedlink
computed, since it has no transliteration of its own. Reading the files is
timed for neither. Both run pinned to one CPU and are timed in CPU seconds
(the machine is shared: waiting for the CPU is not encoding). `ratio` is fedlink's rate over
clkhash's default one; `ratio_unvalidated` over clkhash's hashing alone.

    python -m bench.encode --persons 100000 --seed 5
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, before numpy loads its thread pools

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from multiprocessing import get_context  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from agents.extract import read_extract  # noqa: E402
from agents.hardening import HardenedEncoder  # noqa: E402
from agents.normalise import feature_columns, name_pinyin  # noqa: E402
from agents.prepare import CHUNK  # noqa: E402
from bench.synth import write_scenario  # noqa: E402
from fedlink.schema import DEPARTMENTS, LinkageSchema  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLKHASH_COLUMNS = ("name", "name_pinyin", "sex", "birth_date", "resident_id", "address")


def extracts(scenario: Path) -> list[pd.DataFrame]:
    return [read_extract(scenario / f"{d}.csv", d) for d in DEPARTMENTS if (scenario / f"{d}.csv").exists()]


def in_fresh_process(fn, *args):
    """fn(*args) in a forked child of a parent that never normalises: every cache starts cold."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("fork")) as pool:
        return pool.submit(fn, *args).result()


def fedlink_seconds(scenario: Path) -> tuple[float, float]:
    """CPU seconds to normalise, and to encode, every record as agents.prepare does."""
    schema = LinkageSchema()
    fields = [(f.name, f.kind, f.column) for f in schema.fields]
    normalise = encode = 0.0
    for frame in extracts(scenario):
        encoder = HardenedEncoder(schema, b"bench encode secret", "bench-encode")
        for start in range(0, len(frame), CHUNK):
            t0 = time.process_time()
            features = feature_columns(frame.iloc[start:start + CHUNK], fields)
            t1 = time.process_time()
            encoder.encode(features)
            normalise, encode = normalise + t1 - t0, encode + time.process_time() - t1
    return normalise, encode


def clkhash_records(scenario: Path, path: Path) -> int:
    """The raw columns clkhash encodes, with fedlink's pinyin, as CSV; the number of records."""
    raw = pd.concat([f.assign(name_pinyin=f["name"].map(name_pinyin)) for f in extracts(scenario)])
    raw[list(CLKHASH_COLUMNS)].to_csv(path, index=False)
    return len(raw)


def clkhash_seconds(path: Path, n: int) -> dict:
    python = subprocess.run([str(ROOT / "scripts" / "bench-env")], check=True, capture_output=True,
                            text=True).stdout.strip()
    done = subprocess.run([python, "-m", "bench.encode_clkhash", str(path)], cwd=ROOT, check=True,
                          capture_output=True, text=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["records"] == n
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--cpu", type=int, default=0, help="the CPU both encoders are pinned to")
    args = ap.parse_args()
    os.sched_setaffinity(0, {args.cpu})  # the clkhash process inherits it
    with tempfile.TemporaryDirectory(prefix="fedlink-bench-encode-") as tmp:
        work = Path(tmp)
        scenario, records = work / "scenario", work / "records.csv"
        write_scenario(scenario, args.persons, seed=args.seed)
        # fedlink before and after clkhash, the mean: a change in the machine's load during
        # the run falls on both sides alike.
        before = in_fresh_process(fedlink_seconds, scenario)
        n = in_fresh_process(clkhash_records, scenario, records)
        clkhash = clkhash_seconds(records, n)
        after = in_fresh_process(fedlink_seconds, scenario)
    normalise, encode = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
    ours, theirs, hashing = normalise + encode, clkhash["seconds"], clkhash["seconds_unvalidated"]
    print(json.dumps({
        "persons": args.persons, "seed": args.seed, "records": n,
        "fedlink_records_per_s": round(n / ours), "clkhash_records_per_s": round(n / theirs),
        "ratio": round(theirs / ours, 2),
        # clkhash without its validation pass, against fedlink's normalise + encode and encode alone
        "clkhash_unvalidated_records_per_s": round(n / hashing), "ratio_unvalidated": round(hashing / ours, 2),
        "fedlink_encode_only_records_per_s": round(n / encode), "encode_only_ratio_unvalidated": round(hashing / encode, 2),
        "fedlink_normalise_s": round(normalise, 2), "fedlink_encode_s": round(encode, 2),
        "clkhash_s": round(theirs, 2), "clkhash_unvalidated_s": round(hashing, 2)}))


if __name__ == "__main__":
    main()
