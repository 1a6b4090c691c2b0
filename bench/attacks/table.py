"""docs/hardening.md's table: bench F1 and the worst attack figures per hardening option;
and the command line."""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bench.attacks.harness import ATTACKS, run_attacks
from fedlink.schema import LinkageSchema

# The options docs/hardening.md compares, in its order.
TABLE_OPTIONS = ("none", "salt", "balance", "xor", "blip-0.01", "blip-0.02", "blip-0.05")


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
    from bench import attacks

    ap = argparse.ArgumentParser(prog="python -m bench.attacks", description=attacks.__doc__.split("\n\n")[0])
    ap.add_argument("--persons", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hardening", default=None, help="none, salt, balance, xor, blip-R, twin, diffuse-T; default: the schema's")
    ap.add_argument("--department", default=None,
                    help="the attacked department's extract (default: population; housing with --id-segment)")
    ap.add_argument("--census-persons", type=int, default=None)
    ap.add_argument("--table", type=Path, default=None, metavar="SCENARIO",
                    help="measure every option: bench F1 on SCENARIO and every attack (docs/hardening.md)")
    ap.add_argument("--realism", choices=["cn"], default=None,
                    help="the realistic population's attacks (bench.attacks.realistic)")
    ap.add_argument("--id-segment", action="store_true",
                    help="the attacks on the resident-ID segment (bench.attacks.id_segment)")
    ap.add_argument("--out", type=Path, default=Path("hardening-bench"), help="bench folders of --table")
    a = ap.parse_args(argv)
    if a.table:
        rows = hardening_table(a.table, a.out, a.persons, a.seed)
        (a.out / "hardening.json").write_text(json.dumps(rows, indent=2) + "\n")
        print(markdown(rows))
        return
    if a.id_segment:
        from bench.attacks.id_segment import DEPARTMENT, run_id_segment

        r = run_id_segment(a.persons, a.seed, a.hardening, department=a.department or DEPARTMENT)
        print(json.dumps(r, ensure_ascii=False, indent=2))
        return
    if a.realism:
        from bench.attacks.realistic import run_realistic

        r = run_realistic(a.persons, a.seed, a.hardening, census_persons=a.census_persons)
        print(json.dumps(r, ensure_ascii=False, indent=2))
        return
    r = run_attacks(a.persons, a.seed, a.hardening, department=a.department or "population",
                    census_persons=a.census_persons)
    print(json.dumps(r, ensure_ascii=False, indent=2))
