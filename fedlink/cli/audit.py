"""`fedlink audit`: the privacy officer's commands over the verifiable audit log
(fedlink.officer)."""
from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from fedlink.cli.base import CoordOpt, OfficerOpt, PkiOpt, console
from fedlink.officer import Officer, access_report, verify_export

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Privacy officer: the verifiable audit log.")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp() if text else 0.0


@app.command("log")
def audit_log(coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = OfficerOpt,
              actor: str = "", kind: str = "", department: str = "",
              since: str = typer.Option("", help="ISO time"), until: str = typer.Option("", help="ISO time"),
              as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table")):
    """List audit events, filtered by actor, department, kind and time."""
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


@app.command("export")
def audit_export(out: Path, coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = OfficerOpt):
    """Save the current signed tree head and every event it covers (for `audit verify`)."""
    with Officer.connect(coordinator, pki, party) as officer:
        head = officer.export(out)
    console.print(f"exported {head.tree_size} events and the signed head to {out}")


@app.command("verify")
def audit_verify(export: Optional[Path] = typer.Argument(None, help="An export folder; default: fetch one now"),
                 public_key: Path = typer.Option(..., help="The coordinator's audit-signing.pub"),
                 heads: Path = typer.Option(Path("audit-heads.jsonl"), help="Tree heads verified before"),
                 coordinator: str = CoordOpt, pki: Optional[Path] = typer.Option(None), party: str = OfficerOpt):
    """Verify the whole log offline: every event, the chain, the signature, and
    consistency with the tree heads verified before. Names the first bad event."""
    if export is None and pki is None:
        raise typer.BadParameter("give an export folder, or --pki to fetch the log now")
    with tempfile.TemporaryDirectory(prefix="fedlink-audit-") as fetched:
        if export is None:
            export = Path(fetched)  # fetched now, verified, then removed: the officer keeps the heads file
            with Officer.connect(coordinator, pki, party) as officer:
                officer.export(export)
        head = verify_export(export, public_key, heads)
    console.print(f"audit log verifies: {head.tree_size} events, root {head.root_hash.hex()}, signed at "
                  f"{head.timestamp_ms} ms by key {head.key_id.hex()[:16]}")
    print(head.to_json())


@app.command("access")
def audit_access(coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = OfficerOpt,
                 since: str = typer.Option("", help="ISO time"), until: str = typer.Option("", help="ISO time")):
    """Access report for a period: per actor, what they read and how often."""
    with Officer.connect(coordinator, pki, party) as officer:
        events = officer.events()
    print(json.dumps(access_report(events, _epoch(since), _epoch(until)), indent=2, ensure_ascii=False))
