"""A scenario folder on disk: the six extracts, truth.csv, needs.csv, scenario.toml."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from bench.synth.extracts import render_department
from bench.synth.needs import true_needs
from bench.synth.world import build
from fedlink.rules import load_rulepack
from fedlink.schema import DEPARTMENTS


def write_scenario(out: Path, persons: int, seed: int = 0, error_scale: float = 1.0,
                   reference_date: str = "2025-06-30") -> dict:
    """Write a scenario folder (docs/data-format.md) for `persons` synthetic persons; return a summary."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pack = load_rulepack()
    world = build(persons, seed, reference_date, pack)
    t_build = time.perf_counter() - t0
    pids = world.persons["person_id"].to_numpy()
    truth = []
    records = {}
    for dept in DEPARTMENTS:
        frame, idx = render_department(world, dept, seed, error_scale)
        frame.to_csv(out / f"{dept}.csv", index=False, encoding="utf-8")
        truth.append(pd.DataFrame({"department": dept, "record_id": frame["record_id"].to_numpy(),
                                   "person_id": pids[idx]}))
        records[dept] = len(frame)
    pd.concat(truth, ignore_index=True).to_csv(out / "truth.csv", index=False, encoding="utf-8")
    t_render = time.perf_counter() - t0 - t_build
    needs = true_needs(world, pack)
    needs.to_csv(out / "needs.csv", index=False, encoding="utf-8")
    (out / "scenario.toml").write_text(
        f"# synthetic scenario: bench.synth persons={persons} seed={seed} error_scale={error_scale}\n"
        f"[project]\nreference_date = \"{reference_date}\"\n", encoding="utf-8")
    counts = needs["need"].value_counts()
    return {
        "persons": persons, "households": len(world.households), "seed": seed, "error_scale": error_scale,
        "reference_date": reference_date, "records": records,
        "needs": {nd: int(counts.get(nd, 0)) for nd in pack.needs},
        "seconds": {"build": round(t_build, 2), "render_write": round(t_render, 2),
                    "needs": round(time.perf_counter() - t0 - t_build - t_render, 2),
                    "total": round(time.perf_counter() - t0, 2)},
    }


def main(argv=None) -> None:
    from bench import synth

    ap = argparse.ArgumentParser(prog="python -m bench.synth", description=synth.__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--persons", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--error-scale", type=float, default=1.0)
    ap.add_argument("--reference-date", default="2025-06-30")
    a = ap.parse_args(argv)
    summary = write_scenario(a.out, a.persons, a.seed, a.error_scale, a.reference_date)
    print(json.dumps(summary, ensure_ascii=False, indent=2))

