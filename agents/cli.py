"""`fedlink agent`: a department's agent (keygen, upload, flags, review)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from agents.client import Agent
from agents.config import ConfigError, load_config
from agents.extract import ExtractError
from agents.indicators import IndicatorError
from agents.refs import RefError, new_key
from fedlink.client import message_dict
from fedlink.cli.base import INPUT, Failure, console

app = typer.Typer(no_args_is_help=True, add_completion=False, help="A department's agent.")

# FileExistsError: keygen never overwrites a reference key.
EXIT_CODES = {error: Failure(INPUT) for error in (ConfigError, ExtractError, IndicatorError, RefError,
                                                   FileExistsError)}

ConfigOpt = typer.Option(..., help="The department's agent TOML")


@app.command("keygen")
def agent_keygen(config: Path = ConfigOpt):
    """Create this department's own reference key (never shared, never overwritten)."""
    path = new_key(load_config(config).ref_key_file)
    print(f"reference key written to {path} (mode 0600); back it up: flags cannot be read without it")


@app.command("upload")
def agent_upload(config: Path = ConfigOpt, quiet: bool = typer.Option(False, help="No progress bars"),
                 as_json: bool = typer.Option(False, "--json", help="The upload's summary as JSON on stdout")):
    """Normalise, encode and upload the department's extract (resumes an interrupted upload)."""
    with Agent(load_config(config), show_progress=not quiet) as agent:
        summary = agent.upload()
    if as_json:
        print(json.dumps(message_dict(summary), ensure_ascii=False))
    else:
        print(f"{summary.department}: {summary.record_count} records uploaded and committed "
              f"(upload {summary.upload_id})")
    if summary.replaced_upload_id and not as_json:
        print(f"it replaces upload {summary.replaced_upload_id} for the next run: {summary.records_kept} "
              f"records kept, {summary.records_added} added, {summary.records_removed} removed "
              "(their open flags resolve)")
    for warning in summary.health_warnings:
        console.print(f"[yellow]encoding health:[/yellow] {warning}")


@app.command("flags")
def agent_flags(config: Path = ConfigOpt, out: Path = typer.Option(..., help="Worklist CSV to write"),
                run: str = typer.Option("", help="Run id; default the latest finished run"),
                as_json: bool = typer.Option(False, "--json", help="JSON on stdout")):
    """Pull this department's flags and write the caseworkers' worklist."""
    with Agent(load_config(config), show_progress=False) as agent:
        n = agent.write_worklist(out, run)
    if as_json:
        print(json.dumps({"flags": n, "worklist": str(out)}))
    else:
        print(f"{n} flags written to {out}")


@app.command("review")
def agent_review(config: Path = ConfigOpt,
                 record_id: str = typer.Option(..., help="The department's own record_id"),
                 need: str = typer.Option(...), run: str = typer.Option(..., help="The run of the flag"),
                 outcome: str = typer.Option(..., help="confirmed, assistance_granted, not_in_need, wrong_person"),
                 as_json: bool = typer.Option(False, "--json", help="JSON on stdout")):
    """Record the outcome of a caseworker's review of a flag. A later review of
    the same record and need supersedes the earlier one, and says so."""
    with Agent(load_config(config), show_progress=False) as agent:
        r = agent.review(record_id, need, outcome, run)
    if as_json:
        print(json.dumps({"record_id": record_id, "need": need, "outcome": outcome, "run_id": run,
                          "suppressed_until": r.suppressed_until or None,
                          "supersedes": {"outcome": r.previous_outcome, "run_id": r.previous_run_id,
                                         "recorded_at": r.previous_recorded_at} if r.previous_outcome else None}))
        return
    print(f"outcome {outcome} recorded for {record_id} ({need})"
          + (f"; not raised again before {r.suppressed_until}" if r.suppressed_until else ""))
    if r.previous_outcome and r.previous_outcome != outcome:
        console.print(f"[yellow]note:[/yellow] this replaces the earlier review of {record_id} ({need}): "
                      f"{r.previous_outcome}, recorded {r.previous_recorded_at} on run {r.previous_run_id}; "
                      f"from now on {outcome} counts")
    elif r.previous_outcome:
        console.print(f"the same outcome was recorded before ({r.previous_recorded_at}, run {r.previous_run_id})")
