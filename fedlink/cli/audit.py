"""`fedlink audit`: the privacy officer's commands over the verifiable audit log
(fedlink.officer)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from fedlink.audit import load_log_key
from fedlink.cli.base import INPUT, CoordOpt, Failure, OfficerOpt, PkiOpt, console, epoch_of, iso_time, out
from fedlink.officer import Officer, officer_witness, verify_export
from fedlink.witnessing import Roster

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Privacy officer: the verifiable audit log.")

# A witnesses file, key or state that cannot be read: the input is not valid.
EXIT_CODES = {ValueError: Failure(INPUT)}


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


LogKeyOpt = typer.Option(..., help="The coordinator's log key (audit-signing.vkey, from the bundle)")
WitnessesOpt = typer.Option(..., help="The project's witnesses file (witnesses.toml, from the bundle)")
StateOpt = typer.Option(Path("officer-state"), help="This officer's witness key and state (made on first use)")


@app.command("export")
def audit_export(out_dir: Path = typer.Argument(..., metavar="OUT"), coordinator: str = CoordOpt,
                 pki: Path = PkiOpt, party: str = OfficerOpt):
    """Save the latest checkpoint, the witnesses' cosigned ones and every event (for `audit verify`).
    The checkpoint goes to stdout."""
    with Officer.connect(coordinator, pki, party) as officer:
        note = officer.export(out_dir)
    console.print(f"exported the checkpoint and the events it covers to {out_dir}")
    print(note, end="")


@app.command("verify")
def audit_verify(export: Optional[Path] = typer.Argument(None, help="An export folder; default: fetch one now"),
                 log_key: Path = LogKeyOpt, witnesses: Path = WitnessesOpt, state: Path = StateOpt,
                 coordinator: str = CoordOpt, pki: Optional[Path] = typer.Option(None), party: str = OfficerOpt):
    """Verify the whole log offline: every event, the chain, the log's signature,
    every witness's cosignature (a witness shown another history is named), the
    project's quorum, and consistency with the checkpoint this officer cosigned
    before; then cosign it (handed to the coordinator when fetched now). Names
    the first bad event or witness (exit code 4). The cosigned checkpoint goes to stdout."""
    if export is None and pki is None:
        raise typer.BadParameter("give an export folder, or --pki to fetch the log now")
    key, roster, witness = load_log_key(log_key), Roster.load(witnesses), officer_witness(state, party)
    with tempfile.TemporaryDirectory(prefix="fedlink-audit-") as fetched:
        if export is not None:
            verified = verify_export(export, key, roster, witness)
        else:
            with Officer.connect(coordinator, pki, party) as officer:
                officer.export(Path(fetched))  # fetched now, verified, then removed: the witness state stays
                verified = verify_export(Path(fetched), key, roster, witness)
                officer.add_cosignature(verified.cosigned)
    c = verified.checkpoint
    console.print(f"audit log verifies: {c.size} events of {c.origin}, root {c.root.hex()}, cosigned by "
                  f"{', '.join(verified.cosigners) or 'no other witness'} (quorum {roster.quorum}); "
                  f"cosigned by this officer ({witness.state_path})")
    print(verified.cosigned, end="")


@app.command("witness")
def audit_witness(log_key: Path = LogKeyOpt, witnesses: Path = WitnessesOpt, state: Path = StateOpt,
                  coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = OfficerOpt):
    """Witness the log now: check the latest checkpoint extends the one this officer cosigned
    last, cosign it and hand it back; then report which other witnesses vouch for it."""
    with Officer.connect(coordinator, pki, party) as officer:
        witnessing = officer.witnessing(officer_witness(state, party), Roster.load(witnesses), load_log_key(log_key))
        contact = witnessing.contact()
        vouching, _ = witnessing.vouching(contact)
    console.print(f"cosigned {contact.checkpoint.origin} at size {contact.checkpoint.size}; other witnesses "
                  f"whose latest cosigned checkpoint is consistent with it: {', '.join(vouching) or 'none'}")


@app.command("witness-key")
def audit_witness_key(state: Path = StateOpt, party: str = OfficerOpt):
    """Print this officer's witness verifier key (made on first use), for the witnesses file."""
    print(officer_witness(state, party).verifier.encode())


@app.command("witnesses")
def audit_witnesses(file: Path = typer.Argument(..., help="The project's witnesses file (made if missing)"),
                    add: list[str] = typer.Option([], help="A witness verifier key line to add (or replace)"),
                    quorum: Optional[int] = typer.Option(None, help="Other witnesses an agent requires")):
    """Keep the project's witnesses file (CA operator): the witness keys departments and officers
    send, and the quorum. Send it to every party with the certificates; the coordinator reloads it."""
    from fedlink.note import VerifierKey
    from fedlink.witnessing import DEFAULT_QUORUM

    roster = Roster.load(file) if file.exists() else Roster(file, DEFAULT_QUORUM, ())
    for line in add:
        roster = roster.with_key(VerifierKey.parse(line))
    if quorum is not None:
        roster = Roster(file, quorum, roster.keys)
    roster.write()
    Roster.load(file)  # what was written reads back
    console.print(f"{file}: quorum {roster.quorum}; witnesses: {', '.join(k.name for k in roster.keys) or 'none'}")


@app.command("access")
def audit_access(coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = OfficerOpt,
                 since: str = typer.Option("", help="ISO time"), until: str = typer.Option("", help="ISO time")):
    """Access report for a period, as JSON on stdout: per actor, what they read, how often, and when last;
    per department and run, the other departments' evidence it was shown and the signals of probing."""
    window = epoch_of(since, "--since"), epoch_of(until, "--until")
    with Officer.connect(coordinator, pki, party) as officer:
        report = officer.access(since=window[0], until=window[1])
    for seen in report["actors"].values():
        seen["last"] = iso_time(seen.pop("last_ts"))
    print(json.dumps(report, indent=2, ensure_ascii=False))
