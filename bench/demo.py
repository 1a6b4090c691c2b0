"""`fedlink demo`: synthesise a population, run the whole flow on loopback with
mutual TLS, print what was found against the truth; then caseworkers review
some flags, a month passes, and a second run shows which needs are new,
continuing, in a gradual-exit transition or resolved."""
from __future__ import annotations

import csv
import random
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from bench.harness import BenchSession
from bench.metrics import flag_quality, pairwise_quality
from bench.synth import write_scenario
from fedlink.operator import Operator


def next_month(src: Path, dst: Path, change) -> Path:
    """A department's extract a month later: the same rows, some values changed."""
    with src.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        change(row)
    with dst.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dst


def run_demo(out: Path, persons: int = 2000, seed: int = 7) -> dict:
    console = Console()
    out = Path(out)
    started = time.perf_counter()
    scenario = out / "scenario"
    console.rule("fedlink demo")
    console.print(f"1. Synthesising {persons} persons across six departments into {scenario}")
    write_scenario(scenario, persons, seed=seed)
    console.print("2. A coordinator on loopback with mutual TLS; each department's agent normalises, encodes "
                  "and uploads its extract; the operator runs the linkage; each agent pulls its worklist")
    with BenchSession(scenario, out, console=console) as s:
        for d in s.departments:
            s.upload(d)
        run1, report, _ = s.run()
        worklists, flags = s.worklists(run1, "-month1")
        links = s.links(run1)
        truth = pd.read_csv(scenario / "truth.csv", dtype=str, keep_default_na=False)
        needs = pd.read_csv(scenario / "needs.csv", dtype=str, keep_default_na=False)
        quality = pairwise_quality(links, truth)
        found = flag_quality(flags, truth, needs)
        console.print(f"\nLinkage: {report['persons']} persons from {len(links)} records; pairwise precision "
                      f"{quality['precision']:.4f}, recall {quality['recall']:.4f}, F1 {quality['f1']:.4f}")
        table = Table(title="People in need found, month 1 (person level, against the scenario's truth)")
        for col in ("need", "flagged", "truly in need", "precision", "recall"):
            table.add_column(col, justify="left" if col == "need" else "right")
        for need, q in found.items():
            table.add_row(need, str(q["flagged_persons"]), str(q["true_persons"]), f"{q['precision']:.3f}",
                          f"{q['recall']:.3f}")
        console.print(table)

        console.print("3. Caseworkers review flags from their worklists; outcomes go back to the coordinator")
        reviewed = []
        for d, outcome in (("population", "confirmed"), ("civil_affairs", "assistance_granted"),
                           ("medical_insurance", "not_in_need")):
            wl = pd.read_csv(worklists[d], dtype=str, keep_default_na=False)
            if len(wl):
                row = wl.iloc[0]
                with s.agent(d) as agent:
                    until = agent.record_outcome(row["record_id"], row["need"], outcome, run1)
                reviewed.append(f"{d} {row['need']}: {outcome}" + (f" (not raised again before {until})"
                                                                   if until else ""))
        for line in reviewed:
            console.print(f"   {line}")

        month2 = (date.fromisoformat(s.project.reference_date) + timedelta(days=31)).isoformat()
        rng = random.Random(seed)

        def medical(row):  # some patients' costs were covered, some others fell seriously ill
            oop = float(row["out_of_pocket_12m"] or 0)
            if oop >= 20000 and rng.random() < 0.5:
                row["out_of_pocket_12m"], row["major_illness"] = "0", "0"
            elif oop < 20000 and rng.random() < 0.02:
                row["out_of_pocket_12m"], row["major_illness"] = "48000", "1"

        def housing(row):  # some owners of several properties sold them
            if int(row["properties_owned"] or 0) >= 2 and rng.random() < 0.5:
                row["properties_owned"] = "1"

        console.print(f"4. A month later ({month2}): medical insurance and housing send new extracts; second run")
        s.upload("medical_insurance", next_month(scenario / "medical_insurance.csv",
                                                 out / "medical_insurance-month2.csv", medical))
        s.upload("housing", next_month(scenario / "housing.csv", out / "housing-month2.csv", housing))
        run2, report2, _ = s.run(month2)
        worklists2, flags2 = s.worklists(run2, "-month2")
        status = flags2.pivot_table(index="need", columns="status", values="record_id", aggfunc="count",
                                    fill_value=0)
        table = Table(title="Month 2 flags delivered, by status (department records)")
        table.add_column("need")
        columns = [c for c in ("new", "continuing", "transition", "resolved") if c in status.columns]
        for c in columns:
            table.add_column(c, justify="right")
        for need, row in status.iterrows():
            table.add_row(need, *[str(int(row[c])) for c in columns])
        console.print(table)
        feedback = {c["key"]: ("<5" if c.get("suppressed") else str(c.get("count", 0)))
                    for c in report2.get("outcomes_per_rule", [])}
        console.print(f"Review feedback in the operator's report (small cells suppressed): {feedback}")
        with Operator.connect(s.address, s.pki) as op:  # from now on the coordinator starts the runs itself
            sched = op.set_schedule(s.project.project_id, "1mo", day=1, at="02:00")
        console.print(f"5. The operator schedules monthly runs (day 1, 02:00 UTC): the coordinator starts the "
                      f"next one when it is due, {sched.next_due}")
        audit = s.verify_audit()
    console.print("Worklists for caseworkers (each department sees only its own records):")
    for d in worklists:
        console.print(f"  {d:18s} {worklists[d]}  {worklists2[d]}")
    console.print(f"Audit log verified offline by the privacy officer: {audit['tree_size']} events of "
                  f"{audit['origin']}, root {audit['root_hash']}, cosigned by the witnesses "
                  f"{', '.join(audit['cosigners']) or 'none'} and by the officer (export in {out / 'audit'})")
    console.print(f"Done in {time.perf_counter() - started:.1f} s")
    return {"links": quality, "flags": found, "audit": audit, "run_ids": [run1, run2]}
