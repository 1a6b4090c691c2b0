"""Everything the console shows, read from the coordinator over gRPC with the
console's own operator and officer certificates. Each read is an RPC the
coordinator audits; no read returns a record, a filter or a reference. What the
console does for a person (record their page view, relay an officer's decision)
goes with its certificate of the console role, the only one the coordinator
takes such a call from."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fedlink.audit import AuditError, event_leaf, load_log_key
from fedlink.checkpoint import CheckpointError, cosigners, open_checkpoint
from fedlink.client import message_dict
from fedlink.merkle import ProofError, verify_inclusion
from fedlink.note import NoteError
from fedlink.officer import Officer
from fedlink.operator import Operator
from fedlink.pki import Credentials
from fedlink.v1 import coordinator_pb2 as pb
from fedlink.witnessing import Roster


@dataclass(frozen=True)
class CheckpointCheck:
    """The latest checkpoint as served (the signed note), whether the log's signature
    verified under the pinned log key, and the witnesses' cosignatures that verified."""

    origin: str
    tree_size: int
    root_hash: str
    key_id: str
    note: str
    verified: bool
    problem: str
    cosignatures: tuple[str, ...] = ()  # "witness (size N)": each listed witness's latest verified cosignature


@dataclass(frozen=True)
class InclusionCheck:
    seq: int
    tree_size: int
    verified: bool
    problem: str
    kind: str = ""
    actor: str = ""


class CoordinatorSource:
    """The console's reads. `log_key` is the coordinator's log key (audit-signing.vkey),
    pinned from the PKI folder: a checkpoint signed by any other key fails the check.
    `witnesses` is the project's witnesses file, whose cosignatures are verified."""

    def __init__(self, address: str, operator: Credentials, officer: Credentials, console: Credentials,
                 log_key: Path, witnesses: Path):
        self.log_key = load_log_key(log_key)
        self.roster = Roster.load(witnesses)
        self.operator = Operator(address, operator)
        self.officer = Officer(address, officer)
        self.relay = Officer(address, console)  # role console: RecordView, and decisions on_behalf_of

    def close(self) -> None:
        self.operator.close()
        self.officer.close()
        self.relay.close()

    # -- page views -------------------------------------------------------------

    def record_view(self, viewer: str, page: str, oidc: str = "") -> int:
        """The audit event of `viewer` opening `page` (recorded by the console's own certificate);
        `oidc`: "ISSUER SUBJECT" of a person signed in by OpenID Connect."""
        reply = self.relay._call(self.relay.stub.RecordView,
                                 pb.RecordViewRequest(viewer=viewer, page=page, oidc=oidc), timeout=30)
        return reply.seq

    # -- operator pages ---------------------------------------------------------

    def projects(self) -> list[dict]:
        reply = self.operator._call(self.operator.stub.ListProjects, pb.ListProjectsRequest(), timeout=30)
        return [message_dict(p) for p in reply.projects]

    def runs(self, project_id: str, limit: int = 50) -> list[dict]:
        reply = self.operator._call(self.operator.stub.ListRuns,
                                    pb.ListRunsRequest(project_id=project_id, limit=limit), timeout=30)
        return [message_dict(r) for r in reply.runs]

    def schedule(self, project_id: str) -> dict:
        return message_dict(self.operator.schedule(project_id))

    def report(self, run_id: str) -> dict:
        return self.operator.report(run_id)

    def progress(self, run_id: str) -> Iterator[dict]:
        """The run's progress as WatchRun streams it, to its end; the caller may leave early."""
        call = self.operator.progress(run_id)
        try:
            for p in call:
                yield message_dict(p)
        finally:
            call.cancel()

    # -- approvals (both roles see them; an officer decides) ---------------------

    def _as(self, role: str):
        """The console's client of the viewer's role: its reads are the ones that role may make."""
        return self.officer if role == "officer" else self.operator

    def proposals(self, role: str, project_id: str = "", state: str = "pending") -> list[dict]:
        client = self._as(role)
        reply = client._call(client.stub.ListProposals, pb.ListProposalsRequest(project_id=project_id, state=state),
                             timeout=30)
        return [message_dict(p) for p in reply.proposals]

    def proposal(self, role: str, proposal_id: str) -> dict:
        client = self._as(role)
        return message_dict(client._call(client.stub.GetProposal, pb.GetProposalRequest(proposal_id=proposal_id),
                                         timeout=30))

    def decide(self, proposal_id: str, verdict: str, note: str, officer: str, oidc: str = "") -> dict:
        """`officer` (officer:NAME, from their certificate) approves or rejects: the coordinator records the
        decision as theirs, made via the console's certificate, and refuses it if they proposed it."""
        decide = self.relay.approve if verdict == "approve" else self.relay.reject
        return message_dict(decide(proposal_id, note, on_behalf_of=officer, oidc=oidc))

    # -- officer pages ----------------------------------------------------------

    def events(self, **filters) -> list[dict]:
        """Audit events matching the filters, newest first, their bodies parsed."""
        return [json.loads(body) for _, body in reversed(self.officer.events(**filters))]

    def latest_checkpoint(self) -> CheckpointCheck:
        """The one source of the checkpoint page: the coordinator's latest checkpoint
        (GetCheckpoint), its log signature verified under the pinned log key, and every
        listed witness's latest cosignature (on it or on an earlier checkpoint) verified."""
        reply = self.officer.checkpoint()
        try:
            checkpoint, note = open_checkpoint(reply.checkpoint, self.log_key)
        except (CheckpointError, NoteError) as e:
            return CheckpointCheck("", 0, "", self.log_key.key_id.hex(), reply.checkpoint, False, str(e))
        found: dict[str, int] = {}
        try:
            for text in [reply.checkpoint, *reply.witnessed]:
                cosigned = cosigners(text, self.log_key, self.roster.keys)
                for name in cosigned.names:
                    found[name] = max(found.get(name, 0), cosigned.checkpoint.size)
        except (CheckpointError, NoteError) as e:
            return CheckpointCheck(checkpoint.origin, checkpoint.size, checkpoint.root.hex(),
                                   self.log_key.key_id.hex(), str(note), False, f"a cosignature does not verify: {e}")
        return CheckpointCheck(checkpoint.origin, checkpoint.size, checkpoint.root.hex(), self.log_key.key_id.hex(),
                               str(note), True, "", tuple(f"{n} (size {size})" for n, size in sorted(found.items())))

    def _signed(self):
        """The latest checkpoint, verified under the pinned log key (AuditError if it does not verify)."""
        try:
            checkpoint, _ = open_checkpoint(self.officer.checkpoint().checkpoint, self.log_key)
        except (CheckpointError, NoteError) as e:
            raise AuditError(f"the checkpoint does not verify with the pinned log key: {e}") from None
        return checkpoint

    def inclusion(self, seq: int) -> InclusionCheck:
        """Is event `seq` in the log the latest checkpoint covers? The proof is checked here, not trusted."""
        try:
            checkpoint = self._signed()
        except AuditError as e:
            return InclusionCheck(seq, 0, False, str(e))
        size, root = checkpoint.size, checkpoint.root
        if seq >= size:
            return InclusionCheck(seq, size, False, f"event {seq} is not below the signed size {size}")
        found = self.officer.events(start=seq, end=seq + 1)
        if not found:
            return InclusionCheck(seq, size, False, f"the coordinator returned no event {seq}")
        body = found[0][1]
        event = json.loads(body)
        try:
            verify_inclusion(event_leaf(body), seq, size, self.officer.inclusion_proof(seq, size), root)
            return InclusionCheck(seq, size, True, "", event["kind"], event["actor"])
        except ProofError as e:
            return InclusionCheck(seq, size, False, str(e), event["kind"], event["actor"])

    def access(self, department: str = "", run_id: str = "") -> dict:
        """Who read what (fedlink/officer.py, access_report), for one department or run when given: the
        coordinator sends only the events the report counts, of that department and run."""
        return self.officer.access(department, run_id)
