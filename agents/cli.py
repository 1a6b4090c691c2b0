"""`fedlink agent`: a department's agent (init, keygen, check, upload, flags, review)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from agents.client import Agent
from agents.config import LANGUAGES, AgentConfig, ConfigError, load_config
from agents.extract import ExtractError
from agents.guards import UploadRefused, quality_refusals
from agents.indicators import IndicatorError
from agents.refs import RefError, new_key
from agents.secret import SecretError, new_secret
from fedlink.witness import StateFileError
from fedlink.client import message_dict
from fedlink.cli.base import INPUT, Failure, console, out

app = typer.Typer(no_args_is_help=True, add_completion=False, help="A department's agent.")

# FileExistsError: keygen never overwrites a reference key. StateFileError: the agent's state folder is damaged.
# UploadRefused: the guards stopped an extract (agents/guards.py); --force overrides.
EXIT_CODES = {error: Failure(INPUT) for error in (ConfigError, ExtractError, IndicatorError, RefError,
                                                   SecretError, StateFileError, FileExistsError, UploadRefused)}

ConfigOpt = typer.Option(..., help="The department's agent TOML")

secret_app = typer.Typer(no_args_is_help=True, add_completion=False, help="The project secret the departments share.")


@secret_app.command("new")
def secret_new(out: Path = typer.Option(..., help="File to write (never overwritten)")):
    """Write a new project secret: 256 random bits, self-checking (fedlink-secret-v1)."""
    path = new_secret(out)
    console.print(f"project secret written to {path} (mode 0600); give this same file to every department of "
                  "the project, never to the coordinator")


@app.command("init")
def agent_init(
    config: Path = typer.Argument(..., help="The agent TOML to write (never overwritten)"),
    department: str = typer.Option(...), project: str = typer.Option(...),
    coordinator: str = typer.Option(..., help="HOST:PORT, HOST as the coordinator's certificate names it"),
    extract: Path = typer.Option(..., help="The extract: .csv, .xlsx or .parquet"),
    secret_file: Path = typer.Option(..., help="The project secret, shared out of band between departments"),
    pki: Path = typer.Option(..., help="Folder holding this department's delivered agent-DEPT.pem/.key and ca.pem"),
    language: str = typer.Option("en", help=f"Worklist language: {', '.join(LANGUAGES)}"),
    encoding: str = typer.Option("", help="The CSV's encoding, if detection should not decide (e.g. gb18030)"),
):
    """Write a department's agent TOML (paths relative to it; the guards' thresholds at their defaults)."""
    from fedlink.pki import AUDIT_VKEY_FILE, WITNESSES_FILE, credentials_for, party_folder

    if config.exists():
        raise FileExistsError(f"{config} exists; it is not overwritten")
    if language not in LANGUAGES:
        raise ConfigError(f"--language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    folder = config.resolve().parent
    rel = lambda p: Path(os.path.relpath(Path(p).resolve(), folder))  # noqa: E731
    creds = credentials_for(pki, f"agent-{department}")
    delivered = party_folder(pki, f"agent-{department}")  # the bundle: the log key and the witnesses file
    audit_key, witnesses = delivered / AUDIT_VKEY_FILE, delivered / WITNESSES_FILE
    written = AgentConfig(
        path=config, department=department, project=project, coordinator=coordinator, extract=rel(extract),
        secret_file=rel(secret_file), ref_key_file=Path(f"{department}.refkey"), state_dir=Path("state"),
        tls=type(creds)(rel(creds.cert), rel(creds.key), rel(creds.ca)),
        audit_key=rel(audit_key) if audit_key.exists() else None,
        witnesses=rel(witnesses) if witnesses.exists() else None, language=language,
        encoding=encoding or None).write()
    load_config(written)  # what was written reads back, or the mistake is named now
    out.print(f"agent configuration written to {written}; next: fedlink agent keygen --config {written}")


@app.command("keygen")
def agent_keygen(config: Path = ConfigOpt):
    """Create this department's own reference key (never shared, never overwritten)."""
    path = new_key(load_config(config).ref_key_file)
    print(f"reference key written to {path} (mode 0600); back it up: flags cannot be read without it")


@app.command("check")
def agent_check(config: Path = ConfigOpt, quiet: bool = typer.Option(False, help="No progress bar")):
    """Read, normalise and encode the extract and report its data quality; nothing is sent."""
    cfg = load_config(config)
    with Agent(cfg, show_progress=not quiet) as agent:
        prepared = agent.prepare(agent.project())
    out.print(prepared.quality.render())
    refusals = quality_refusals(prepared.quality, cfg)
    for reason in refusals:
        out.print(f"[red]an upload would be refused:[/red] {reason}")
    out.print(f"{prepared.record_count} records encoded in {len(prepared.batches)} batches; nothing was sent"
                  + ("" if refusals else "; the extract passes the upload guards (the share of current records "
                     "it would remove is checked at upload)"))
    if refusals:
        raise typer.Exit(INPUT)


@app.command("upload")
def agent_upload(config: Path = ConfigOpt, quiet: bool = typer.Option(False, help="No progress bars"),
                 force: bool = typer.Option(False, "--force", help="Upload even if the guards refuse it: too many "
                                                                   "current records removed, fields unreadable"),
                 as_json: bool = typer.Option(False, "--json", help="The upload's summary as JSON on stdout")):
    """Normalise, encode and upload the department's extract (resumes an interrupted upload).
    Its data-quality summary (counts only) is printed and sent with it."""
    with Agent(load_config(config), show_progress=not quiet) as agent:
        project = agent.project()
        prepared = agent.prepare(project)
        console.print(prepared.quality.render())
        summary = agent.upload(project, prepared, force=force)
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
