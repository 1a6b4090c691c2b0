"""The operator's client: create projects, start and watch runs, read reports."""
from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from fedlink.client import CoordinatorClient, message_dict
from fedlink.schema import Project
from fedlink.v1 import coordinator_pb2 as pb
from fedlink.wire import project_from_pb, project_to_pb


@dataclass(frozen=True)
class ProjectReply:
    """A project as the coordinator created it or changed its rules, and the
    rules that cannot fire in it, each as a sentence saying why."""

    project: Project
    idle_rules: tuple[str, ...]

    @classmethod
    def from_pb(cls, reply: pb.Project) -> ProjectReply:
        return cls(project_from_pb(reply), tuple(i.explanation for i in reply.idle_rules))


class Operator(CoordinatorClient):
    party = "operator"

    def create_project(self, project: Project) -> ProjectReply:
        return ProjectReply.from_pb(self._call(self.stub.CreateProject, pb.CreateProjectRequest(
            project=project_to_pb(project))))

    def start_run(self, project_id: str, as_of: str = "") -> str:
        return self._call(self.stub.StartRun, pb.StartRunRequest(project_id=project_id, as_of=as_of)).run_id

    # Changes that can widen what anyone learns are proposals: an officer approves them (`fedlink approvals`).
    def propose_rules(self, project_id: str, rules_toml: str, reason: str = "") -> pb.Proposal:
        return self._call(self.stub.ProposeChange, pb.ProposeChangeRequest(
            project_id=project_id, reason=reason, rules=pb.RulesChange(rules_toml=rules_toml)))

    def propose_linkage(self, project_id: str, threshold: float, auto_threshold: bool,
                        reason: str = "") -> pb.Proposal:
        return self._call(self.stub.ProposeChange, pb.ProposeChangeRequest(
            project_id=project_id, reason=reason,
            linkage=pb.LinkageChange(threshold=threshold, auto_threshold=auto_threshold)))

    def propose_key_check_reset(self, project_id: str, reason: str = "") -> pb.Proposal:
        return self._call(self.stub.ProposeChange, pb.ProposeChangeRequest(
            project_id=project_id, reason=reason, key_check_reset=pb.KeyCheckReset()))

    def set_schedule(self, project_id: str, every: str, day: int = 0, at: str = "", start: str = "",
                     start_now: bool = False) -> pb.Schedule:
        return self._call(self.stub.SetSchedule, pb.SetScheduleRequest(project_id=project_id, every=every, day=day,
                                                                        at=at, start=start, start_now=start_now))

    def schedule(self, project_id: str) -> pb.Schedule:
        return self._call(self.stub.GetSchedule, pb.GetScheduleRequest(project_id=project_id))

    def progress(self, run_id: str):
        # A run takes as long as it takes: the stream has no deadline.
        return self._call(self.stub.WatchRun, pb.WatchRunRequest(run_id=run_id), timeout=None)

    def watch(self, run_id: str, console: Console | None = None) -> str:
        """Follow a run to its end; return its final state."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        state = ""
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[msg]}"),
                      TimeRemainingColumn(), console=console, disable=console is None) as bar:
            tasks: dict[str, int] = {}
            for p in self.progress(run_id):
                state = p.state
                if p.phase not in tasks and p.state == "running":
                    tasks[p.phase] = bar.add_task(p.phase, total=max(p.total, 1), msg="")
                if p.phase in tasks:
                    bar.update(tasks[p.phase], completed=p.done, total=max(p.total, 1), msg=p.message[:60])
        if console is not None:
            console.print(f"run {run_id}: {state}")
        return state

    def report(self, run_id: str) -> dict:
        return message_dict(self._call(self.stub.GetReport, pb.GetReportRequest(run_id=run_id)))


def print_report(report: dict, console: Console) -> None:
    console.print(f"run {report['run_id']}: {report['state']}, {report.get('persons', 0)} persons; "
                  f"cells under {report.get('suppression_k', 5)} suppressed")
    for section in ("records_per_department", "linked_pairs_per_department_pair", "persons_by_department_count",
                    "flags_per_need", "flags_per_need_tier", "flags_per_status", "outcomes_per_rule"):
        table = Table(title=section.replace("_", " "))
        table.add_column("")
        table.add_column("count", justify="right")
        for cell in report.get(section, []):
            table.add_row(cell["key"], f"<{report.get('suppression_k', 5)}" if cell.get("suppressed")
                          else str(cell.get("count", 0)))
        console.print(table)
    print_encoding_health(report.get("encoding_health", []), console)
    print_upload_quality(report.get("upload_quality", []), console)
    for rule in report.get("idle_rules", []):
        console.print(f"[yellow]not looked for:[/yellow] {rule['explanation']}")
    held = report.get("retention")
    if held:
        console.print(f"the store holds {held['records_held']} records in {held['uploads_held']} uploads (oldest "
                      f"committed {held['oldest_held'] or '-'}); after this run it deleted {held['records_purged']} "
                      f"records of {held['uploads_purged']} uploads and the flags of {held['runs_purged']} older "
                      f"runs (keeping what the last {held['keep_runs']} runs used)" if int(held["keep_runs"])
                      else f"the store holds {held['records_held']} records in {held['uploads_held']} uploads; "
                           "the coordinator keeps everything (--keep-runs 0)")


def print_idle_rules(sentences, console: Console) -> None:
    """The rules that cannot fire, each with why: an operator sees what the project does not look for."""
    for sentence in sentences:
        console.print(f"[yellow]warning:[/yellow] {sentence}")


def print_encoding_health(health: list[dict], console: Console) -> None:
    """Per department, the encoding health of the upload the run used (checked at commit)."""
    table = Table(title="encoding health of the uploads used")
    for col in ("department", "fill", "max identical", "position share min..max", "warnings"):
        table.add_column(col)
    for h in health:
        table.add_row(h["department"], f"{h['fill_rate']:.3f}", str(h["max_duplicates"]),
                      f"{h['position_min']:.3f}..{h['position_max']:.3f}", "; ".join(h["warnings"]) or "none")
    console.print(table)


def print_upload_quality(uploads: list[dict], console: Console) -> None:
    """Per department, the data-quality summary its agent sent with the upload the run used (counts only)."""
    table = Table(title="data quality of the uploads used (per field: blank / unreadable / invalid IDs)")
    for col in ("department", "records", "fields not clean"):
        table.add_column(col)
    for u in uploads:
        records = int(u.get("records", 0))
        notes = []
        for f in u.get("fields", []):
            parts = [f"{int(f.get(k, 0))} {label}" for k, label in
                     (("blank", "blank"), ("unreadable", "unreadable"), ("invalid_ids", "invalid IDs"),
                      ("pinyin_only", "pinyin only"), ("converted", "converted")) if int(f.get(k, 0))]
            if parts:
                notes.append(f"{f['column']}: {', '.join(parts)}")
        table.add_row(u["department"], str(records), "; ".join(notes) or "all readable")
    console.print(table)
