"""`fedlink`: one command for every role. Each subcommand imports only its own
side, so an agent install never loads the coordinator's dependencies."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Privacy-preserving federated record linkage.")
pki_app = typer.Typer(no_args_is_help=True, help="Certificates for the coordinator, agents, operators, officers.")
coord_app = typer.Typer(no_args_is_help=True, help="The central coordinator.")
agent_app = typer.Typer(no_args_is_help=True, help="A department's agent.")
project_app = typer.Typer(no_args_is_help=True, help="Operator: linkage projects.")
run_app = typer.Typer(no_args_is_help=True, help="Operator: linkage runs.")
app.add_typer(pki_app, name="pki")
app.add_typer(coord_app, name="coordinator")
app.add_typer(agent_app, name="agent")
app.add_typer(project_app, name="project")
app.add_typer(run_app, name="run")
audit_app = typer.Typer(no_args_is_help=True, help="Privacy officer: the verifiable audit log.")
app.add_typer(audit_app, name="audit")

console = Console(stderr=True)


def _fail(message: str, code: int = 2):
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


# -- pki ----------------------------------------------------------------------

@pki_app.command("init")
def pki_init(
    directory: Path,
    departments: str = typer.Option(..., help="Comma-separated departments, e.g. population,civil_affairs"),
    operators: str = typer.Option("operator", help="Comma-separated operator names"),
    officers: str = typer.Option("officer", help="Comma-separated privacy officer names"),
    hostname: list[str] = typer.Option([], help="Extra coordinator host names or IPs"),
    days: int = typer.Option(365, help="Validity of the issued certificates"),
):
    """Issue a CA and certificates for the coordinator, each department, operators and officers."""
    from fedlink.pki import init_pki

    try:
        issued = init_pki(directory, [d.strip() for d in departments.split(",") if d.strip()],
                          operators=tuple(operators.split(",")), officers=tuple(officers.split(",")),
                          hostnames=tuple(hostname), days=days)
    except (FileExistsError, ValueError) as e:
        _fail(str(e))
    from fedlink.audit import new_signing_key, public_path

    audit_key = new_signing_key(directory / "audit-signing.key")
    for party, creds in issued.items():
        console.print(f"{party:28s} {creds.cert}")
    console.print(f"{'audit log signing key':28s} {audit_key} (public: {public_path(audit_key)})")


# -- coordinator --------------------------------------------------------------

def _server_credentials(pki: Optional[Path], cert: Optional[Path], key: Optional[Path], ca: Optional[Path]):
    from fedlink.pki import Credentials, credentials_for

    if pki:
        return credentials_for(pki, "coordinator")
    if cert and key and ca:
        return Credentials(cert, key, ca)
    return None


@coord_app.command("serve")
def coordinator_serve(
    listen: str = typer.Option("127.0.0.1:50051", help="host:port to listen on"),
    database: str = typer.Option("fedlink.sqlite", help="SQLite file, or postgresql://..."),
    pki: Optional[Path] = typer.Option(None, help="PKI folder from `fedlink pki init` (uses coordinator.pem)"),
    cert: Optional[Path] = typer.Option(None), key: Optional[Path] = typer.Option(None),
    ca: Optional[Path] = typer.Option(None),
    insecure: bool = typer.Option(False, help="Plaintext, loopback only, for development"),
    engine: str = typer.Option("local", help="Match engine: local (exact, LSH-blocked for large pairs), "
                                             "local+exact, local+lsh, dask://HOST:PORT (the same choice on a "
                                             "Dask cluster), dask+exact://, dask+lsh://; "
                                             "see docs/scale.md"),
    metrics_port: Optional[int] = typer.Option(None, help="Serve Prometheus metrics on this port"),
    grace: float = typer.Option(10.0, help="Seconds calls in flight get to finish on Ctrl-C"),
    max_message_bytes: int = typer.Option(16 * 1024 * 1024, help="Largest gRPC message accepted"),
    max_batch_records: int = typer.Option(50_000, help="Most records in one upload batch"),
    max_records_per_upload: int = typer.Option(20_000_000, help="Most records in one department's upload"),
    max_calls_per_minute: int = typer.Option(6_000, help="Calls per minute per caller identity (0: no limit)"),
):
    """Run the coordinator until Ctrl-C (which finishes the calls in flight).
    Pending schema migrations are applied first."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from sqlalchemy.exc import SQLAlchemyError

    from server.limits import Limits
    from server.serve import serve_forever, start

    try:
        limits = Limits(max_message_bytes, max_batch_records, max_records_per_upload, max_calls_per_minute)
        running = start(listen, database, credentials=_server_credentials(pki, cert, key, ca), insecure=insecure,
                        engine=engine, metrics_port=metrics_port, limits=limits)
    except (ValueError, OSError, FileNotFoundError) as e:
        _fail(str(e))
    except SQLAlchemyError as e:
        _fail(f"database {_safe_url(database)}: {e.__class__.__name__}: {str(e).splitlines()[0]}")
    console.print(f"coordinator serving on {listen} (database {database})")
    serve_forever(running, grace)


def _safe_url(url: str) -> str:
    """A database URL without its password, for messages."""
    if "://" not in url:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@coord_app.command("migrate")
def coordinator_migrate(
    database: str = typer.Option("fedlink.sqlite", help="SQLite file, or postgresql://..."),
):
    """Apply the pending schema migrations (Alembic) and exit; `serve` does this too."""
    from sqlalchemy.exc import SQLAlchemyError

    from server.migrations import upgrade
    from server.store import connect_engine

    try:
        engine = connect_engine(database)
        before, after = upgrade(engine)
        engine.dispose()
    except SQLAlchemyError as e:
        _fail(f"database {_safe_url(database)}: {e.__class__.__name__}: {str(e).splitlines()[0]}")
    if before == after:
        console.print(f"database {_safe_url(database)} already at revision {after}")
    else:
        console.print(f"database {_safe_url(database)} migrated from {before or 'empty'} to revision {after}")


# -- operator -----------------------------------------------------------------

def _operator(coordinator: str, pki: Optional[Path], party: str):
    from fedlink.operator import Operator

    return Operator.connect(coordinator, pki, party)


CoordOpt = typer.Option("127.0.0.1:50051", help="Coordinator address")
PkiOpt = typer.Option(..., help="PKI folder holding your certificate")
PartyOpt = typer.Option("operator", help="Your certificate's name in the PKI folder")


@project_app.command("create")
def project_create(config: Path, coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = PartyOpt):
    """Create a linkage project from a TOML file (departments, schema, threshold, rules)."""
    from fedlink.schema import Project, SchemaError

    try:
        project = Project.from_toml(config)
    except SchemaError as e:
        _fail(str(e))
    with _operator(coordinator, pki, party) as op:
        created = op.create_project(project)
    console.print(f"project {created.project_id} created, schema digest {created.digest()[:16]}")


@project_app.command("rules")
def project_rules(project: str, rules: Path = typer.Option(..., help="The new rule pack (TOML)"),
                  coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = PartyOpt):
    """Replace a project's rule pack (thresholds, regional lines, rules); the change is an audit event."""
    import grpc

    from fedlink.rules import RuleError, load_rulepack

    text = rules.read_text(encoding="utf-8")
    try:
        load_rulepack(text, source=str(rules))
    except RuleError as e:
        _fail(str(e))
    with _operator(coordinator, pki, party) as op:
        try:
            op.update_rules(project, text)
        except grpc.RpcError as e:
            _fail(f"{e.code().name}: {e.details()}", 3)
    console.print(f"rules of {project} replaced; they apply to the next uploads and runs")


@project_app.command("schedule")
def project_schedule(project: str,
                     every: str = typer.Option("", help="1mo (monthly), 3mo, 6mo, 14d, 1w, or semester (March and "
                                                        "September); omit to show the schedule"),
                     day: int = typer.Option(1, help="Day of the month (1-28) for month cadences and semester"),
                     at: str = typer.Option("02:00", help="UTC time of day, HH:MM"),
                     start: str = typer.Option("", help="ISO date of the first possible run (default today)"),
                     off: bool = typer.Option(False, "--off", help="Remove the schedule"),
                     coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = PartyOpt):
    """Run a project on a cadence: the coordinator starts each run when it is due (audited)."""
    import grpc

    with _operator(coordinator, pki, party) as op:
        try:
            s = (op.set_schedule(project, "" if off else every, day, at, start) if every or off
                 else op.schedule(project))
        except grpc.RpcError as e:
            _fail(f"{e.code().name}: {e.details()}", 3)
    if not s.every:
        console.print(f"{project} has no schedule: runs start when an operator starts them")
        return
    console.print(f"{project} runs every {s.every} (day {s.day}, {s.at} UTC); next run due {s.next_due}"
                  + (f"; last started {s.last_run_id or '-'} for {s.last_due}" if s.last_due else "")
                  + (f"; last due run not started: {s.last_error}" if s.last_error else ""))


@run_app.command("start")
def run_start(project: str, coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = PartyOpt,
              as_of: str = typer.Option("", help="ISO date the run is for (default today)"),
              watch: bool = typer.Option(True, help="Follow the run's progress")):
    """Start a linkage run on the departments' current uploads."""
    with _operator(coordinator, pki, party) as op:
        run_id = op.start_run(project, as_of)
        console.print(f"run {run_id} started")
        if watch:
            op.watch(run_id, console)
        print(run_id)


@run_app.command("watch")
def run_watch(run_id: str, coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = PartyOpt):
    """Follow a run's progress until it finishes."""
    with _operator(coordinator, pki, party) as op:
        op.watch(run_id, console)


@run_app.command("report")
def run_report(run_id: str, coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = PartyOpt,
               as_json: bool = typer.Option(False, "--json")):
    """A run's report: counts per department, matches, flags per need (small cells suppressed)."""
    with _operator(coordinator, pki, party) as op:
        report = op.report(run_id)
    if as_json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        from fedlink.operator import print_report

        print_report(report, Console())


# -- privacy officer ------------------------------------------------------------

OfficerOpt = typer.Option("officer", help="Your certificate's name in the PKI folder")


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp() if text else 0.0


@audit_app.command("log")
def audit_log(coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = OfficerOpt,
              actor: str = "", kind: str = "", department: str = "",
              since: str = typer.Option("", help="ISO time"), until: str = typer.Option("", help="ISO time"),
              as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table")):
    """List audit events, filtered by actor, department, kind and time."""
    from datetime import datetime

    from rich.table import Table

    from fedlink.officer import Officer

    with Officer.connect(coordinator, pki, party) as officer:
        events = officer.events(actor=actor, kind=kind, department=department, since=_epoch(since),
                                until=_epoch(until))
    if as_json:
        for _, body in events:
            print(body)
        return
    table = Table()
    for col in ("seq", "time", "actor", "kind", "project", "department", "details"):
        table.add_column(col)
    for seq, body in events:
        e = json.loads(body)
        table.add_row(str(seq), datetime.fromtimestamp(e["ts"]).isoformat(timespec="seconds"), e["actor"], e["kind"],
                      e.get("project_id") or "", e.get("department") or "",
                      json.dumps(e["details"], ensure_ascii=False)[:80])
    Console().print(table)


@audit_app.command("export")
def audit_export(out: Path, coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = OfficerOpt):
    """Save the current signed tree head and every event it covers (for `audit verify`)."""
    from fedlink.officer import Officer

    with Officer.connect(coordinator, pki, party) as officer:
        head = officer.export(out)
    console.print(f"exported {head.tree_size} events and the signed head to {out}")


@audit_app.command("verify")
def audit_verify(export: Optional[Path] = typer.Argument(None, help="An export folder; default: fetch one now"),
                 public_key: Path = typer.Option(..., help="The coordinator's audit-signing.pub"),
                 heads: Path = typer.Option(Path("audit-heads.jsonl"), help="Tree heads verified before"),
                 coordinator: str = CoordOpt, pki: Optional[Path] = typer.Option(None), party: str = OfficerOpt):
    """Verify the whole log offline: every event, the chain, the signature, and
    consistency with the tree heads verified before. Names the first bad event."""
    import tempfile

    from fedlink.audit import AuditError
    from fedlink.officer import Officer, verify_export

    if export is None and pki is None:
        _fail("give an export folder, or --pki to fetch the log now")
    with tempfile.TemporaryDirectory(prefix="fedlink-audit-") as fetched:
        if export is None:
            export = Path(fetched)  # fetched now, verified, then removed: the officer keeps the heads file
            with Officer.connect(coordinator, pki, party) as officer:
                officer.export(export)
        try:
            head = verify_export(export, public_key, heads)
        except AuditError as e:
            _fail(f"audit log does NOT verify: {e}", 1)
    console.print(f"audit log verifies: {head.tree_size} events, root {head.root_hash.hex()}, signed at "
                  f"{head.timestamp_ms} ms by key {head.key_id.hex()[:16]}")
    print(head.to_json())


@audit_app.command("access")
def audit_access(coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = OfficerOpt,
                 since: str = typer.Option("", help="ISO time"), until: str = typer.Option("", help="ISO time")):
    """Access report for a period: per actor, what they read and how often."""
    from fedlink.officer import Officer, access_report

    with Officer.connect(coordinator, pki, party) as officer:
        events = officer.events()
    print(json.dumps(access_report(events, _epoch(since), _epoch(until)), indent=2, ensure_ascii=False))


# -- agent --------------------------------------------------------------------

def _agent(config: Path, quiet: bool = False):
    from agents.client import Agent
    from agents.config import load_config

    return Agent(load_config(config), show_progress=not quiet)


@agent_app.command("keygen")
def agent_keygen(config: Path = typer.Option(..., help="The department's agent TOML")):
    """Create this department's own reference key (never shared, never overwritten)."""
    from agents.config import load_config
    from agents.refs import new_key

    try:
        path = new_key(load_config(config).ref_key_file)
    except FileExistsError as e:
        _fail(str(e))
    console.print(f"reference key written to {path} (mode 0600); back it up: flags cannot be read without it")


@agent_app.command("upload")
def agent_upload(config: Path = typer.Option(..., help="The department's agent TOML"),
                 quiet: bool = typer.Option(False, help="No progress bars")):
    """Normalise, encode and upload the department's extract (resumes an interrupted upload)."""
    import grpc

    from agents.config import ConfigError
    from agents.extract import ExtractError
    from agents.indicators import IndicatorError
    from agents.refs import RefError
    from fedlink.audit import AuditError

    from agents.client import AgentUnavailable

    try:
        with _agent(config, quiet) as agent:
            summary = agent.upload()
    except (ConfigError, ExtractError, IndicatorError, RefError) as e:
        _fail(str(e))
    except AuditError as e:
        _fail(str(e), 4)
    except AgentUnavailable as e:
        _fail(f"upload not complete: {e}", 3)
    except grpc.RpcError as e:
        _fail(f"coordinator refused: {e.code().name}: {e.details()}", 3)
    console.print(f"{summary.department}: {summary.record_count} records uploaded and committed "
                  f"(upload {summary.upload_id})")
    if summary.replaced_upload_id:
        console.print(f"it replaces upload {summary.replaced_upload_id} for the next run: {summary.records_kept} "
                      f"records kept, {summary.records_added} added, {summary.records_removed} removed "
                      "(their open flags resolve)")
    for warning in summary.health_warnings:
        console.print(f"[yellow]encoding health:[/yellow] {warning}")


@agent_app.command("flags")
def agent_flags(config: Path = typer.Option(..., help="The department's agent TOML"),
                out: Path = typer.Option(..., help="Worklist CSV to write"),
                run: str = typer.Option("", help="Run id; default the latest finished run")):
    """Pull this department's flags and write the caseworkers' worklist."""
    import grpc

    from agents.config import ConfigError
    from agents.extract import ExtractError
    from agents.refs import RefError
    from fedlink.audit import AuditError

    from agents.client import AgentUnavailable

    try:
        with _agent(config, True) as agent:
            n = agent.write_worklist(out, run)
    except (ConfigError, ExtractError, RefError) as e:
        _fail(str(e))
    except AuditError as e:
        _fail(str(e), 4)
    except AgentUnavailable as e:
        _fail(f"no worklist written: {e}", 3)
    except grpc.RpcError as e:
        _fail(f"coordinator refused: {e.code().name}: {e.details()}", 3)
    console.print(f"{n} flags written to {out}")


@agent_app.command("review")
def agent_review(config: Path = typer.Option(..., help="The department's agent TOML"),
                 record_id: str = typer.Option(..., help="The department's own record_id"),
                 need: str = typer.Option(...), run: str = typer.Option(..., help="The run of the flag"),
                 outcome: str = typer.Option(..., help="confirmed, assistance_granted, not_in_need, wrong_person")):
    """Record the outcome of a caseworker's review of a flag."""
    import grpc

    try:
        with _agent(config, True) as agent:
            until = agent.record_outcome(record_id, need, outcome, run)
    except grpc.RpcError as e:
        _fail(f"coordinator refused: {e.code().name}: {e.details()}", 3)
    console.print(f"outcome {outcome} recorded" + (f"; not raised again before {until}" if until else ""))


# -- scenarios, bench, demo ---------------------------------------------------

@app.command()
def synth(out: Path, persons: int = typer.Option(2000), seed: int = typer.Option(0),
          error_scale: float = typer.Option(1.0, help="Multiply every error rate")):
    """Write a synthetic scenario (six departments, truth, needs) in the format of docs/data-format.md."""
    from bench.synth import write_scenario

    summary = write_scenario(out, persons, seed=seed, error_scale=error_scale)
    console.print_json(json.dumps(summary, ensure_ascii=False, default=str))


@app.command()
def bench(scenario: Path, out: Path = typer.Option(..., help="Folder for links.csv, flags.csv, metrics.json"),
          threshold: Optional[float] = typer.Option(None, help="Override the schema's Dice threshold"),
          engine: str = typer.Option("local", help="Match engine, as for `coordinator serve --engine`"),
          database: Optional[str] = typer.Option(None, help="An empty coordinator database URL "
                                                 "(default: a new SQLite file in --out)")):
    """Run the real coordinator and agents on a scenario over loopback mTLS; write links, flags, metrics."""
    from bench.harness import run_bench

    metrics = run_bench(scenario, out, threshold=threshold, console=console, engine=engine, database=database)
    print(json.dumps({k: metrics[k] for k in ("links", "times_s") if k in metrics}, indent=2))


@app.command()
def demo(out: Path = typer.Option(Path("fedlink-demo"), help="Where the scenario and worklists go"),
         persons: int = typer.Option(2000), seed: int = typer.Option(7)):
    """The whole flow on a synthetic population, on loopback with mTLS; prints what it found."""
    from bench.demo import run_demo

    run_demo(out, persons=persons, seed=seed)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
