"""`fedlink project` and `fedlink run`: the operator's commands, over the
operator's gRPC client (fedlink.operator)."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from fedlink.cli.base import INPUT, CoordOpt, Failure, PartyOpt, PkiOpt, console, out
from fedlink.client import message_dict
from fedlink.officer import print_proposal
from fedlink.operator import Operator, print_idle_rules, print_report
from fedlink.rules import RuleError, load_rulepack
from fedlink.schema import Project, SchemaError

project_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Operator: linkage projects.")
run_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Operator: linkage runs.")

EXIT_CODES = {SchemaError: Failure(INPUT), RuleError: Failure(INPUT)}

JsonOpt = typer.Option(False, "--json", help="JSON on stdout")


def emit(data: dict) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


@project_app.command("create")
def project_create(config: Path, coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = PartyOpt,
                   as_json: bool = JsonOpt):
    """Create a linkage project from a TOML file (departments, schema, threshold, rules)."""
    project = Project.from_toml(config)
    with Operator.connect(coordinator, pki, party) as op:
        created = op.create_project(project)
    if as_json:
        emit({"project_id": created.project.project_id, "schema_digest": created.project.digest(),
              "departments": list(created.project.departments),
              "idle_rules": list(created.idle_rules)})
    else:
        print(f"project {created.project.project_id} created, schema digest {created.project.digest()[:16]}")
        print_idle_rules(created.idle_rules, console)


ReasonOpt = typer.Option("", help="Why, for the officer who decides (kept in the audit log)")


def _proposed(p) -> None:
    print_proposal(p, console)
    console.print(f"proposal {p.proposal_id} waits for a privacy officer: `fedlink approvals approve "
                  f"{p.proposal_id}`; nothing changes until then")
    print(p.proposal_id)


@project_app.command("rules")
def project_rules(project: str, rules: Path = typer.Option(..., help="The new rule pack (TOML)"),
                  reason: str = ReasonOpt, coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = PartyOpt):
    """Propose a new rule pack (rules, routing, disclosure policy, suppression k, thresholds, regional lines):
    it applies when a privacy officer approves it."""
    text = rules.read_text(encoding="utf-8")
    load_rulepack(text, source=str(rules))  # refused here, before the coordinator is called
    with Operator.connect(coordinator, pki, party) as op:
        _proposed(op.propose_rules(project, text, reason))


@project_app.command("threshold")
def project_threshold(project: str, threshold: float = typer.Option(..., help="Least Dice at which records link"),
                      auto: bool = typer.Option(True, help="Raise it per department pair from the scores"),
                      reason: str = ReasonOpt, coordinator: str = CoordOpt, pki: Path = PkiOpt,
                      party: str = PartyOpt):
    """Propose new linkage threshold settings; they apply when a privacy officer approves them."""
    with Operator.connect(coordinator, pki, party) as op:
        _proposed(op.propose_linkage(project, threshold, auto, reason))


@project_app.command("reset-key-check")
def project_reset_key_check(project: str, reason: str = ReasonOpt, coordinator: str = CoordOpt,
                            pki: Path = PkiOpt, party: str = PartyOpt):
    """Propose forgetting the pinned key check (a department with a wrong secret uploaded first and locks the
    others out); once an officer approves, the next upload pins it again."""
    with Operator.connect(coordinator, pki, party) as op:
        _proposed(op.propose_key_check_reset(project, reason))


@project_app.command("schedule")
def project_schedule(project: str,
                     every: str = typer.Option("", help="1mo (monthly), 3mo, 6mo, 14d, 1w, or semester (March and "
                                                        "September); omit to show the schedule"),
                     day: int = typer.Option(1, help="Day of the month (1-28) for month cadences and semester"),
                     at: str = typer.Option("02:00", help="UTC time of day, HH:MM"),
                     start: str = typer.Option("", help="ISO date of the first possible run (default today)"),
                     start_now: bool = typer.Option(False, "--start-now",
                                                    help="An occurrence already past (today at a time gone by, "
                                                         "or since --start) runs now, instead of waiting for the "
                                                         "next one"),
                     off: bool = typer.Option(False, "--off", help="Remove the schedule"),
                     coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = PartyOpt,
                     as_json: bool = JsonOpt):
    """Run a project on a cadence: the coordinator starts each run when it is due (audited).
    Occurrences already past when the schedule is set do not run, unless --start-now."""
    with Operator.connect(coordinator, pki, party) as op:
        s = (op.set_schedule(project, "" if off else every, day, at, start, start_now) if every or off
             else op.schedule(project))
    if as_json:
        emit(message_dict(s))
    elif not s.every:
        print(f"{project} has no schedule: runs start when an operator starts them")
    else:
        print(f"{project} runs every {s.every} (day {s.day}, {s.at} UTC); next run due {s.next_due}"
              + (f"; last started {s.last_run_id or '-'} for {s.last_due}" if s.last_due else "")
              + (f"; last due run not started: {s.last_error}" if s.last_error else ""))


@run_app.command("start")
def run_start(project: str, coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = PartyOpt,
              as_of: str = typer.Option("", help="ISO date the run is for (default: the project's reference date)"),
              watch: bool = typer.Option(True, help="Follow the run's progress (on stderr)"),
              as_json: bool = JsonOpt):
    """Start a linkage run on the departments' current uploads; its id goes to stdout."""
    with Operator.connect(coordinator, pki, party) as op:
        run_id = op.start_run(project, as_of)
        console.print(f"run {run_id} started")
        state = op.watch(run_id, console) if watch else "queued"
    if as_json:
        emit({"run_id": run_id, "project_id": project, "state": state})
    else:
        print(run_id)


@run_app.command("watch")
def run_watch(run_id: str, coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = PartyOpt,
              as_json: bool = JsonOpt):
    """Follow a run's progress (on stderr) until it finishes; its final state goes to stdout."""
    with Operator.connect(coordinator, pki, party) as op:
        state = op.watch(run_id, console)
    emit({"run_id": run_id, "state": state}) if as_json else print(state)


@run_app.command("report")
def run_report(run_id: str, coordinator: str = CoordOpt, pki: Path = PkiOpt, party: str = PartyOpt,
               as_json: bool = typer.Option(False, "--json")):
    """A run's report: counts per department, matches, flags per need (small cells suppressed)."""
    with Operator.connect(coordinator, pki, party) as op:
        report = op.report(run_id)
    if as_json:
        emit(report)
    else:
        print_report(report, out)
