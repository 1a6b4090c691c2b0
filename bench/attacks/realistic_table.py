"""docs/hardening.md's realistic table: every realistic attack and the linkage F1 of each
hardening on the same realistic population, one row per (hardening, seed).

The attacks run on the population extract of `fedlink synth --realism cn --persons N --seed S`
(the census another seed, as bench.attacks.realistic draws it); F1 is bench.linkage's
comparison (record-level by default) of every department of that scenario, written under WORK.

    python -m bench.attacks.realistic_table --persons 5000 --seeds 2 3 \\
        --hardening none balance twin diffuse-3 [--without sex] [--comparison segments] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.attacks.realistic import run_realistic
from bench.linkage import measure
from bench.synth import write_scenario

COLUMNS = ("hardening", "comparison", "ID segment", "without", "seed", "F1", "pairs found", "surname disclosure", "sex read (vs commoner)",
           "full name vs commonest")


def row(persons: int, seed: int, hardening: str, without: tuple[str, ...], work: Path,
        comparison: str = "record", id_segment_bits: int | None = None) -> dict:
    scenario = work / f"cn{persons}-s{seed}"
    if not (scenario / "truth.csv").exists():
        write_scenario(scenario, persons, seed=seed, realism="cn")
    attack = run_realistic(persons, seed, hardening, without=without, comparison=comparison,
                           id_segment_bits=id_segment_bits)
    quality = measure(scenario, comparison, hardening, without, id_segment_bits)
    sex = attack["sex"]
    return {"hardening": hardening, "comparison": comparison, "ID segment": attack["id_segment_bits"],
            "without": ",".join(without) or "-", "seed": seed, "F1": round(quality["f1"], 5),
            "pairs found": f"{attack['complement_pairs']['found']} / {attack['complement_pairs']['of']}",
            "surname disclosure": f"{100 * attack['surname']['surname_disclosure']:.2f} %"
            + "".join(f" ({c['surname']})" for c in attack["surname"]["learned_correctly"]),
            "sex read (vs commoner)": f"{100 * sex['accuracy']:.1f} % vs {100 * sex['commoner_sex']:.1f} %",
            "full name vs commonest": f"{100 * attack['full_name']['advantage']:+.2f} pts",
            "sex_advantage": sex["advantage"], "surname_disclosure": attack["surname"]["surname_disclosure"],
            "full_name_advantage": attack["full_name"]["advantage"], "f1": quality["f1"]}


def markdown(rows: list[dict], columns: tuple[str, ...] | list[str] = COLUMNS) -> str:
    """The rows' ``columns`` as a Markdown table (bench.attacks.id_segment's too)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=5000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--hardening", nargs="+", default=["none", "balance"])
    ap.add_argument("--without", default="", help="fields left out of the schema, comma-separated (e.g. sex)")
    ap.add_argument("--comparison", choices=["record", "segments"], default="record")
    ap.add_argument("--work", type=Path, default=Path("bench-realistic"))
    ap.add_argument("--id-segment-bits", type=int, default=None,
                    help="the schema's id_segment_bits (default: the schema's; 0: the ID hashed with the other fields)")
    args = ap.parse_args(argv)
    without = tuple(x for x in args.without.split(",") if x)
    rows = []
    for seed in args.seeds:
        for h in args.hardening:
            rows.append(row(args.persons, seed, h, without, args.work, args.comparison, args.id_segment_bits))
            print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    print(markdown(rows))


if __name__ == "__main__":
    main()
