"""`fedlink synth`, `fedlink bench`, `fedlink demo`: scenarios and the whole
system on them, playing every role at once."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from fedlink.cli.base import console


def synth(out: Path, persons: int = typer.Option(2000), seed: int = typer.Option(0),
          error_scale: float = typer.Option(1.0, help="Multiply every error rate"),
          realism: Optional[str] = typer.Option(None, help="cn: a population that looks like China "
                                                "(docs/quality.md), with groups.csv"),
          without: str = typer.Option("", help="Realities to leave out with --realism cn, comma-separated "
                                      "(blank_ids, permits, migrants, ...)")):
    """Write a synthetic scenario (six departments, truth, needs) in the format of docs/data-format.md."""
    from bench.synth import write_scenario

    try:
        summary = write_scenario(out, persons, seed=seed, error_scale=error_scale, realism=realism,
                                 without=[w for w in without.split(",") if w])
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    print(json.dumps(summary, indent=2, ensure_ascii=False, default=str))  # the result: stdout


def bench(scenario: Path, out: Path = typer.Option(..., help="Folder for links.csv, flags.csv, metrics.json"),
          threshold: Optional[float] = typer.Option(None, help="Override the schema's Dice threshold"),
          engine: str = typer.Option("local", help="Match engine, as for `coordinator serve --engine`"),
          database: Optional[str] = typer.Option(None, help="An empty coordinator database URL "
                                                 "(default: a new SQLite file in --out)")):
    """Run the real coordinator and agents on a scenario over loopback mTLS; write links, flags, metrics."""
    from bench.harness import run_bench

    metrics = run_bench(scenario, out, threshold=threshold, console=console, engine=engine, database=database)
    print(json.dumps({k: metrics[k] for k in ("links", "times_s") if k in metrics}, indent=2))
    if "fairness" in metrics:
        from bench.metrics import fairness_table

        print(fairness_table(metrics["fairness"]))


def demo(out: Path = typer.Option(Path("fedlink-demo"), help="Where the scenario and worklists go"),
         persons: int = typer.Option(2000), seed: int = typer.Option(7)):
    """The whole flow on a synthetic population, on loopback with mTLS; prints what it found."""
    from bench.demo import run_demo

    run_demo(out, persons=persons, seed=seed)
