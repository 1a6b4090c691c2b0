"""`fedlink agent`: a department's agent (keygen, upload, flags, review)."""
from __future__ import annotations

from pathlib import Path

import typer

from agents.client import Agent
from agents.config import ConfigError, load_config
from agents.extract import ExtractError
from agents.indicators import IndicatorError
from agents.refs import RefError, new_key
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
    console.print(f"reference key written to {path} (mode 0600); back it up: flags cannot be read without it")


@app.command("upload")
def agent_upload(config: Path = ConfigOpt, quiet: bool = typer.Option(False, help="No progress bars")):
    """Normalise, encode and upload the department's extract (resumes an interrupted upload)."""
    with Agent(load_config(config), show_progress=not quiet) as agent:
        summary = agent.upload()
    console.print(f"{summary.department}: {summary.record_count} records uploaded and committed "
                  f"(upload {summary.upload_id})")
    if summary.replaced_upload_id:
        console.print(f"it replaces upload {summary.replaced_upload_id} for the next run: {summary.records_kept} "
                      f"records kept, {summary.records_added} added, {summary.records_removed} removed "
                      "(their open flags resolve)")
    for warning in summary.health_warnings:
        console.print(f"[yellow]encoding health:[/yellow] {warning}")


@app.command("flags")
def agent_flags(config: Path = ConfigOpt, out: Path = typer.Option(..., help="Worklist CSV to write"),
                run: str = typer.Option("", help="Run id; default the latest finished run")):
    """Pull this department's flags and write the caseworkers' worklist."""
    with Agent(load_config(config), show_progress=False) as agent:
        n = agent.write_worklist(out, run)
    console.print(f"{n} flags written to {out}")


@app.command("review")
def agent_review(config: Path = ConfigOpt,
                 record_id: str = typer.Option(..., help="The department's own record_id"),
                 need: str = typer.Option(...), run: str = typer.Option(..., help="The run of the flag"),
                 outcome: str = typer.Option(..., help="confirmed, assistance_granted, not_in_need, wrong_person")):
    """Record the outcome of a caseworker's review of a flag."""
    with Agent(load_config(config), show_progress=False) as agent:
        until = agent.record_outcome(record_id, need, outcome, run)
    console.print(f"outcome {outcome} recorded" + (f"; not raised again before {until}" if until else ""))


@app.command("witness-key")
def agent_witness_key(config: Path = ConfigOpt):
    """Print this agent's witness verifier key (made on first use, 0600): send the line to the
    CA operator, who adds it to the project's witnesses file (`fedlink audit witnesses --add`)."""
    from fedlink.pki import agent_party_name
    from fedlink.witnessing import witness_at

    c = load_config(config)
    print(witness_at(c.witness_key_path, c.state_dir / "witness.json", agent_party_name(c.department))
          .verifier.encode())


@app.command("witness")
def agent_witness(config: Path = ConfigOpt):
    """Witness the coordinator's log now: check the latest checkpoint extends the last one this
    agent cosigned, cosign it and hand the cosignature back (upload and flags do this too)."""
    with Agent(load_config(config), show_progress=False) as agent:
        contact = agent.witness()
    console.print(f"cosigned checkpoint {contact.checkpoint.origin} size {contact.checkpoint.size}")
