"""`fedlink approvals`: dual control. An operator's proposed change (`fedlink
project rules|threshold|reset-key-check`) waits here until a privacy officer
who did not propose it approves or rejects it (fedlink.officer)."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fedlink.cli.base import CoordOpt, OfficerOpt, PkiOpt, console
from fedlink.officer import Officer, print_proposal, when

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Privacy officer: approve or reject the changes operators propose.")

PartyOpt = typer.Option("officer", help="Your certificate's name in the PKI folder (an operator may list and show)")


@app.command("list")
def approvals_list(project: str = typer.Option("", help="One project (default all)"),
                   state: str = typer.Option("pending", help="pending, approved, rejected, expired, superseded, "
                                                             "or '' for all"),
                   coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = PartyOpt):
    """The proposals waiting for a decision (or in another state)."""
    with Officer.connect(coordinator, pki, party) as officer:
        found = officer.proposals(project, state)
    table = Table()
    for col in ("proposal", "project", "change", "state", "proposed by", "at", "widens", "reason"):
        table.add_column(col, no_wrap=col in ("proposal", "state"))
    for p in found:
        table.add_row(p.proposal_id, p.project_id, p.kind, p.state, p.proposed_by, when(p.proposed_at),
                      "yes" if any(i.widens for i in p.items) else "no", escape(p.reason[:60]))
    Console().print(table)


@app.command("show")
def approvals_show(proposal_id: str, coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = PartyOpt):
    """One proposal in full: what it changes and who would newly learn what."""
    with Officer.connect(coordinator, pki, party) as officer:
        print_proposal(officer.proposal(proposal_id), Console())


@app.command("approve")
def approvals_approve(proposal_id: str, note: str = typer.Option("", help="Why (kept in the audit log)"),
                      coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = OfficerOpt):
    """Approve a proposal: it takes effect now (an officer who did not propose it)."""
    with Officer.connect(coordinator, pki, party) as officer:
        p = officer.approve(proposal_id, note)
    console.print(f"proposal {p.proposal_id} approved: the {p.kind} change to {p.project_id} is in effect")


@app.command("reject")
def approvals_reject(proposal_id: str, note: str = typer.Option("", help="Why (kept in the audit log)"),
                     coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = OfficerOpt):
    """Reject a proposal: nothing changes."""
    with Officer.connect(coordinator, pki, party) as officer:
        p = officer.reject(proposal_id, note)
    console.print(f"proposal {p.proposal_id} rejected: {p.project_id} is unchanged")
