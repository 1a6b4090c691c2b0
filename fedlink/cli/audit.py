"""`fedlink audit`: the privacy officer's commands over the verifiable audit log
(fedlink.officer)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from fedlink.cli.base import CoordOpt, OfficerOpt, PkiOpt, console, epoch_of, iso_time, out
from fedlink.officer import Officer, access_report, verify_export

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Privacy officer: the verifiable audit log.")


def readable(body: str) -> dict:
    """An event as an officer reads it: its time in ISO 8601 instead of the signed epoch."""
    e = json.loads(body)
    return {"seq": e["seq"], "time": iso_time(e["ts"]), "actor": e["actor"], "kind": e["kind"],
            "project_id": e.get("project_id"), "department": e.get("department"), "details": e["details"]}


@app.command("log")
def audit_log(coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = OfficerOpt,
              actor: str = "", kind: str = typer.Option("", help="An event kind, e.g. upload.commit"),
              department: str = "",
              since: str = typer.Option("", help="ISO time"), until: str = typer.Option("", help="ISO time"),
              as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table")):
    """List audit events, filtered by actor, department, kind and time."""
    window = epoch_of(since, "--since"), epoch_of(until, "--until")
    with Officer.connect(coordinator, pki, party) as officer:
        events = [readable(body) for _, body in officer.events(
            actor=actor, kind=kind, department=department, since=window[0], until=window[1])]
    if as_json:
        for e in events:
            print(json.dumps(e, ensure_ascii=False))
        return
    table = Table()
    for col in ("seq", "time", "actor", "kind", "project", "department", "details"):
        table.add_column(col, overflow="fold")
    for e in events:
        table.add_row(str(e["seq"]), e["time"], e["actor"], e["kind"], e["project_id"] or "", e["department"] or "",
                      json.dumps(e["details"], ensure_ascii=False))
    out.print(table)
    console.print(f"{len(events)} events")


@app.command("export")
def audit_export(out_dir: Path = typer.Argument(..., metavar="OUT"), coordinator: str = CoordOpt,
                 pki: Path = PkiOpt, party: str = OfficerOpt):
    """Save the current signed tree head and every event it covers (for `audit verify`)."""
    with Officer.connect(coordinator, pki, party) as officer:
        head = officer.export(out_dir)
    console.print(f"exported {head.tree_size} events and the signed head to {out_dir}")


@app.command("verify")
def audit_verify(export: Optional[Path] = typer.Argument(None, help="An export folder; default: fetch one now"),
                 public_key: Path = typer.Option(..., help="The coordinator's audit-signing.pub"),
                 heads: Path = typer.Option(Path("audit-heads.jsonl"), help="Tree heads verified before"),
                 coordinator: str = CoordOpt, pki: Optional[Path] = typer.Option(None), party: str = OfficerOpt):
    """Verify the whole log offline: every event, the chain, the signature, and
    consistency with the tree heads verified before. Names the first bad event
    (exit code 4). The verified head goes to stdout, as the heads file keeps it."""
    if export is None and pki is None:
        raise typer.BadParameter("give an export folder, or --pki to fetch the log now")
    with tempfile.TemporaryDirectory(prefix="fedlink-audit-") as fetched:
        if export is None:
            export = Path(fetched)  # fetched now, verified, then removed: the officer keeps the heads file
            with Officer.connect(coordinator, pki, party) as officer:
                officer.export(export)
        head = verify_export(export, public_key, heads)
    console.print(f"audit log verifies: {head.tree_size} events, root {head.root_hash.hex()}, signed at "
                  f"{iso_time(head.timestamp_ms / 1000)} by key {head.key_id.hex()[:16]}")
    print(head.to_json())


@app.command("access")
def audit_access(coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = OfficerOpt,
                 since: str = typer.Option("", help="ISO time"), until: str = typer.Option("", help="ISO time")):
    """Access report for a period, as JSON on stdout: per actor, what they read, how often, and when last;
    per department and run, the other departments' evidence it was shown and the signals of probing."""
    window = epoch_of(since, "--since"), epoch_of(until, "--until")
    with Officer.connect(coordinator, pki, party) as officer:
        events = officer.events()
    report = access_report(events, *window)
    for seen in report["actors"].values():
        seen["last"] = iso_time(seen.pop("last_ts"))
    print(json.dumps(report, indent=2, ensure_ascii=False))
