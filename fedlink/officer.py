"""The privacy officer's tools: witness the log, list and filter audit events,
verify the whole log against its checkpoints and the witnesses' cosignatures,
and report who read what."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from fedlink.audit import AuditError, verify_events
from fedlink.checkpoint import Checkpoint, CheckpointError, cosigners, open_checkpoint, parse_checkpoint
from fedlink.client import CoordinatorClient
from fedlink.note import Note, NoteError, VerifierKey, parse
from fedlink.v1 import coordinator_pb2 as pb
from fedlink.witness import Witness, WitnessError
from fedlink.witnessing import Roster, Witnessing, witness_at

# Event kinds that are someone reading data, for the access report.
READ_KINDS = ("flags.deliver", "report.read", "audit.read", "project.read", "run.watch", "project.list", "run.list",
              "console.view")
# What the access report reads: the reads, and the runs' ends (their probe signals).
REPORT_KINDS = (*READ_KINDS, "run.done")


def officer_witness(state: Path, name: str = "officer") -> Witness:
    """The officer's witness: its key and state in ``state`` (the key made on first use)."""
    return witness_at(Path(state) / "witness.key", Path(state) / "witness.json", name)


class Officer(CoordinatorClient):
    party = "officer"

    def witnessing(self, witness: Witness, roster: Roster, log_key: VerifierKey) -> Witnessing:
        return Witnessing(self._call, self.stub, witness, roster, log_key, Path(witness.state_path).parent /
                          "audit-key.vkey")

    def checkpoint(self) -> pb.CheckpointReply:
        return self._call(self.stub.GetCheckpoint, pb.GetCheckpointRequest(), timeout=30)

    def events(self, **filters) -> list[tuple[int, str]]:
        request = pb.ListAuditEventsRequest(**{k: v for k, v in filters.items() if v})
        return [(e.seq, e.body) for e in self._call(self.stub.ListAuditEvents, request, timeout=600)]

    def access(self, department: str = "", run_id: str = "", since: float = 0.0, until: float = 0.0) -> dict:
        """The access report (access_report) of one department, run or period, or the whole log; the
        coordinator returns only the events it counts."""
        return access_report(self.events(kinds=REPORT_KINDS, department=department, run_id=run_id, since=since,
                                         until=until))

    # Dual control: proposals an operator made, decided by an officer who did not make them.
    def proposals(self, project_id: str = "", state: str = "") -> list[pb.Proposal]:
        return list(self._call(self.stub.ListProposals, pb.ListProposalsRequest(
            project_id=project_id, state=state)).proposals)

    def proposal(self, proposal_id: str) -> pb.Proposal:
        return self._call(self.stub.GetProposal, pb.GetProposalRequest(proposal_id=proposal_id))

    # `on_behalf_of`: the console relaying the decision of the officer signed in to it.
    def approve(self, proposal_id: str, note: str = "", on_behalf_of: str = "", oidc: str = "") -> pb.Proposal:
        return self._call(self.stub.ApproveProposal, pb.DecideProposalRequest(
            proposal_id=proposal_id, note=note, on_behalf_of=on_behalf_of, oidc=oidc))

    def reject(self, proposal_id: str, note: str = "", on_behalf_of: str = "", oidc: str = "") -> pb.Proposal:
        return self._call(self.stub.RejectProposal, pb.DecideProposalRequest(
            proposal_id=proposal_id, note=note, on_behalf_of=on_behalf_of, oidc=oidc))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return list(self._call(self.stub.GetInclusionProof, pb.GetInclusionProofRequest(index=index, tree_size=size),
                               timeout=30).hashes)

    def add_cosignature(self, note: Note) -> list[str]:
        return list(self._call(self.stub.AddCosignature, pb.AddCosignatureRequest(cosigned=str(note))).witnesses)

    def export(self, out: Path) -> str:
        """Save the latest checkpoint, every witness's latest cosigned one, and every
        event the latest covers, for offline verification; returns the checkpoint note."""
        reply = self.checkpoint()
        size = parse_checkpoint(parse(reply.checkpoint).text).size
        events = self.events(end=size)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "checkpoint").write_text(reply.checkpoint)
        (out / "witnessed.json").write_text(json.dumps(list(reply.witnessed), indent=1) + "\n")
        with (out / "events.jsonl").open("w", encoding="utf-8") as f:
            for seq, body in events:
                f.write(json.dumps({"seq": seq, "body": body}, ensure_ascii=False) + "\n")
        return reply.checkpoint


def load_export(folder: Path) -> tuple[str, list[str], list[tuple[int, str]]]:
    folder = Path(folder)
    try:
        checkpoint = (folder / "checkpoint").read_text()
        witnessed = json.loads((folder / "witnessed.json").read_text())
        lines = (folder / "events.jsonl").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as e:  # an input mistake, not a log that fails to verify
        raise FileNotFoundError(f"{folder} is not an audit export (fedlink audit export): {e.filename} is "
                                "missing") from None
    events = []
    for line in lines:
        if line.strip():
            e = json.loads(line)
            events.append((e["seq"], e["body"]))
    return checkpoint, witnessed, events


@dataclass(frozen=True)
class Verified:
    """A verified export: its checkpoint (as signed), and the witnesses whose cosigned checkpoints match the log."""

    checkpoint: Checkpoint
    note: Note
    cosigners: tuple[str, ...]
    cosigned: Note | None = None  # the officer's own cosignature on it, to hand back


def verify_export(folder: Path, log_key: VerifierKey, roster: Roster | None = None,
                  witness: Witness | None = None) -> Verified:
    """Verify an export offline: every event, the chain, the log's signature, every
    cosignature by a known witness (each witness's cosigned checkpoint must match
    the log, or it is named), the project's quorum, and consistency with the
    checkpoint this officer cosigned before; then cosign it. Raises AuditError."""
    text, witnessed, events = load_export(folder)
    try:
        checkpoint, note = open_checkpoint(text, log_key)
    except (CheckpointError, NoteError) as e:
        raise AuditError(f"the exported checkpoint does not verify with the log key: {e}") from None
    tree = verify_events(events[:checkpoint.size], [checkpoint])
    others = [k for k in (roster.keys if roster else ()) if not witness or k.public_key != witness.verifier.public_key]
    vouching = []
    for cosigned_text in [text, *witnessed]:
        try:
            cosigned = cosigners(cosigned_text, log_key, others)
        except (CheckpointError, NoteError) as e:
            raise AuditError(f"a cosigned checkpoint in the export does not verify: {e}") from None
        size = cosigned.checkpoint.size
        if cosigned.cosigners and (size > tree.size or tree.root(size) != cosigned.checkpoint.root):
            raise AuditError(f"the checkpoint of size {size} cosigned by {', '.join(cosigned.names)} is not the "
                             "log exported: the coordinator showed them another history (split view)")
        vouching += [n for n in cosigned.names if n not in vouching]
    if roster is not None and len(vouching) < roster.quorum:
        raise AuditError(f"the log verifies but is cosigned by {len(vouching)} of the {roster.quorum} witnesses the "
                         f"project requires ({', '.join(vouching) or 'none'}; listed in {roster.path})")
    mine = None
    if witness is not None:
        last = witness.last(checkpoint.origin)
        proof = tree.consistency_proof(last.size, checkpoint.size) if last and 0 < last.size < checkpoint.size else []
        try:
            mine = note.with_signature(witness.cosign(note, proof, log_key))
        except WitnessError as e:
            raise AuditError(f"the exported log is not consistent with the checkpoint this officer cosigned before "
                             f"({e}); the state is {witness.state_path}") from None
    return Verified(checkpoint, note, tuple(vouching), mine)


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
