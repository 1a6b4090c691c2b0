"""A scenario folder on disk: the six extracts, truth.csv, needs.csv, scenario.toml."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from bench.synth.extracts import render_department
from bench.synth.needs import true_needs
from bench.synth.realistic.people import build_cn
from bench.synth.realistic.render import GROUPS, render_department_cn
from bench.synth.world import build
from fedlink.rules import load_rulepack
from fedlink.schema import DEPARTMENTS


def write_scenario(out: Path, persons: int, seed: int = 0, error_scale: float = 1.0,
                   reference_date: str = "2025-06-30", realism: str | None = None, without=()) -> dict:
    """Write a scenario folder (docs/data-format.md) for `persons` synthetic persons; return a summary.
    ``realism="cn"``: the realistic population of bench.synth.realistic, with groups.csv; ``without``
    names realities it leaves out (bench.synth.realistic.REALITIES)."""
    if realism not in (None, "cn"):
        raise ValueError(f"unknown realism {realism!r} (known: cn)")
    if without and realism is None:
        raise ValueError("--without needs --realism cn")
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pack = load_rulepack()
    cn = build_cn(persons, seed, reference_date, pack, without) if realism else None
    world = cn.world if cn else build(persons, seed, reference_date, pack)
    t_build = time.perf_counter() - t0
    pids = world.persons["person_id"].to_numpy()
    truth = []
    groups = []
    records = {}
    for dept in DEPARTMENTS:
        if cn:
            frame, idx, labels = render_department_cn(cn, dept, seed, error_scale)
            groups.append(labels)
        else:
            frame, idx = render_department(world, dept, seed, error_scale)
        frame.to_csv(out / f"{dept}.csv", index=False, encoding="utf-8")
        truth.append(pd.DataFrame({"department": dept, "record_id": frame["record_id"].to_numpy(),
                                   "person_id": pids[idx]}))
        records[dept] = len(frame)
    pd.concat(truth, ignore_index=True).to_csv(out / "truth.csv", index=False, encoding="utf-8")
    if cn:
        pd.concat(groups, ignore_index=True).astype({g: int for g in GROUPS}).to_csv(
            out / "groups.csv", index=False, encoding="utf-8")
    t_render = time.perf_counter() - t0 - t_build
    needs = true_needs(world, pack)
    needs.to_csv(out / "needs.csv", index=False, encoding="utf-8")
    realistic = f" realism={realism} without={','.join(sorted(without)) or '-'}" if realism else ""
    (out / "scenario.toml").write_text(
        f"# synthetic scenario: bench.synth persons={persons} seed={seed} error_scale={error_scale}{realistic}\n"
        f"[project]\nreference_date = \"{reference_date}\"\n", encoding="utf-8")
    counts = needs["need"].value_counts()
    realistic = {"realism": realism, "without": sorted(without)} if realism else {}
    return {
        "persons": persons, "households": len(world.households), "seed": seed, "error_scale": error_scale,
        **realistic,
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
    ap.add_argument("--realism", choices=["cn"], help="the realistic population (bench.synth.realistic)")
    ap.add_argument("--without", default="", help="realities to leave out, comma-separated (with --realism cn)")
    a = ap.parse_args(argv)
    without = [w for w in a.without.split(",") if w]
    try:
        summary = write_scenario(a.out, a.persons, a.seed, a.error_scale, a.reference_date, a.realism, without)
    except ValueError as e:
        ap.error(str(e))
    print(json.dumps(summary, ensure_ascii=False, indent=2))

