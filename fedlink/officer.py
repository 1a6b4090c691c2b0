"""The privacy officer's tools: list and filter audit events, verify the whole
log against a signed tree head, and report who read what."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from fedlink.audit import TreeHead, load_public_key, verify_events
from fedlink.client import CoordinatorClient
from fedlink.v1 import coordinator_pb2 as pb

# Event kinds that are someone reading data, for the access report.
READ_KINDS = ("flags.deliver", "report.read", "audit.read", "project.read", "run.watch", "project.list", "run.list",
              "console.view")


class Officer(CoordinatorClient):
    party = "officer"

    def tree_head(self) -> TreeHead:
        return TreeHead.from_pb(self._call(self.stub.GetTreeHead, pb.GetTreeHeadRequest(), timeout=30))

    def events(self, **filters) -> list[tuple[int, str]]:
        request = pb.ListAuditEventsRequest(**{k: v for k, v in filters.items() if v})
        return [(e.seq, e.body) for e in self._call(self.stub.ListAuditEvents, request, timeout=600)]

    # Dual control: proposals an operator made, decided by an officer who did not make them.
    def proposals(self, project_id: str = "", state: str = "") -> list[pb.Proposal]:
        return list(self._call(self.stub.ListProposals, pb.ListProposalsRequest(
            project_id=project_id, state=state)).proposals)

    def proposal(self, proposal_id: str) -> pb.Proposal:
        return self._call(self.stub.GetProposal, pb.GetProposalRequest(proposal_id=proposal_id))

    def approve(self, proposal_id: str, note: str = "") -> pb.Proposal:
        return self._call(self.stub.ApproveProposal, pb.DecideProposalRequest(proposal_id=proposal_id, note=note))

    def reject(self, proposal_id: str, note: str = "") -> pb.Proposal:
        return self._call(self.stub.RejectProposal, pb.DecideProposalRequest(proposal_id=proposal_id, note=note))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return list(self._call(self.stub.GetInclusionProof, pb.GetInclusionProofRequest(index=index, tree_size=size),
                               timeout=30).hashes)

    def export(self, out: Path) -> TreeHead:
        """Save a signed head and every event it covers, for offline verification."""
        head = self.tree_head()
        events = self.events(end=head.tree_size)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "head.json").write_text(head.to_json() + "\n")
        with (out / "events.jsonl").open("w", encoding="utf-8") as f:
            for seq, body in events:
                f.write(json.dumps({"seq": seq, "body": body}, ensure_ascii=False) + "\n")
        return head


def load_export(folder: Path) -> tuple[TreeHead, list[tuple[int, str]]]:
    folder = Path(folder)
    head = TreeHead.from_json((folder / "head.json").read_text())
    events = []
    for line in (folder / "events.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            e = json.loads(line)
            events.append((e["seq"], e["body"]))
    return head, events


def load_heads(path: Path | None) -> list[TreeHead]:
    if path is None or not Path(path).exists():
        return []
    return [TreeHead.from_json(line) for line in Path(path).read_text().splitlines() if line.strip()]


def verify_export(folder: Path, public_key: Path, heads_file: Path | None = None) -> TreeHead:
    """Verify an export offline; on success remember its head in `heads_file`."""
    head, events = load_export(folder)
    verify_events(events[:head.tree_size], head, load_public_key(public_key), load_heads(heads_file))
    if heads_file is not None:
        Path(heads_file).parent.mkdir(parents=True, exist_ok=True)
        with Path(heads_file).open("a") as f:
            f.write(head.to_json() + "\n")
    return head


def access_report(events: list[tuple[int, str]], since: float = 0.0, until: float = 0.0) -> dict:
    """Per actor: what they read, how often, and when they last did; per
    department and run: the other departments' evidence delivered to it (by
    kind: how many of its flags showed it, at most over its pulls) and what
    probing through its extract would leave (probe signals of the run)."""
    per_actor: dict[str, Counter] = defaultdict(Counter)
    last: dict[str, float] = {}
    departments: dict[str, dict] = defaultdict(lambda: defaultdict(lambda: {"disclosed": {}, "pulls": 0}))
    for _, body in events:
        e = json.loads(body)
        if (since and e["ts"] < since) or (until and e["ts"] >= until):
            continue
        details = e["details"]
        if e["kind"] == "run.done" and details.get("probe_signals"):
            for dept, signals in details["probe_signals"].items():
                departments[dept][details["run_id"]]["probe_signals"] = signals
        if e["kind"] not in READ_KINDS:
            continue
        if e["kind"] == "flags.deliver":
            run = departments[e["department"]][details["run_id"]]
            run["pulls"] += 1
            for kind, n in details.get("disclosed", {}).items():
                run["disclosed"][kind] = max(run["disclosed"].get(kind, 0), n)
            run["flags_resting_on_first_seen"] = max(run.get("flags_resting_on_first_seen", 0),
                                                     details.get("rests_on_first_seen", 0))
        what = e["kind"] if e["kind"] != "audit.read" else f"audit.read:{details.get('method', '')}"
        # A console page is the person's read, recorded by the console's certificate on their behalf.
        actor = details["viewer"] if e["kind"] == "console.view" else e["actor"]
        per_actor[actor][what] += 1
        last[actor] = max(last.get(actor, 0.0), e["ts"])
    return {
        "actors": {actor: {"reads": dict(c), "last_ts": last[actor]} for actor, c in sorted(per_actor.items())},
        "departments": {d: dict(runs) for d, runs in sorted(departments.items())},
    }


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts).isoformat(timespec="minutes") if ts else "-"


def print_proposal(p, out: Console) -> None:
    """A proposal as its officer reads it: who asks what and why, what changes, who newly learns what."""
    decided = f"; {p.state} by {p.decided_by} at {when(p.decided_at)}" if p.decided_by else ""
    out.print(f"proposal {p.proposal_id} ({p.kind}) for project {p.project_id}: [bold]{p.state}[/bold]{decided}")
    out.print(f"  proposed by {p.proposed_by} at {when(p.proposed_at)}; expires {when(p.expires_at)}")
    out.print(f"  reason: {escape(p.reason) or '(none given)'}" + (f"\n  note: {escape(p.note)}" if p.note else ""))
    out.print("[bold]what changes[/bold] (WIDENS: someone may learn more than now):")
    for i in p.items:
        mark = "[red]WIDENS[/red] " if i.widens else ""
        out.print(f"  - {mark}{i.area} {escape(i.item)}: {escape(i.before or '(none)')} -> "
                  f"{escape(i.after or '(none)')}; {escape(i.plain)}")
    if p.newly_disclosed:
        out.print("[bold]who would newly learn what:[/bold]")
        for line in p.newly_disclosed:
            out.print(f"  - {escape(line)}")
    else:
        out.print("no one would learn more than now")
