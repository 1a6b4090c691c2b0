"""Everything the console shows, read from the coordinator over gRPC with the
console's own operator and officer certificates. Each read is an RPC the
coordinator audits; no read returns a record, a filter or a reference."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fedlink.audit import AuditError, event_leaf, load_public_key, verify_tree_head
from fedlink.client import message_dict
from fedlink.merkle import ProofError, verify_inclusion
from fedlink.officer import Officer, access_report
from fedlink.operator import Operator
from fedlink.pki import Credentials
from fedlink.v1 import coordinator_pb2 as pb


@dataclass(frozen=True)
class HeadCheck:
    """The latest signed tree head and whether its signature verified under the pinned key."""

    tree_size: int
    root_hash: str
    timestamp_ms: int
    key_id: str
    verified: bool
    problem: str
    cosignatures: tuple[str, ...] = ()  # witnesses' names, once the coordinator serves cosigned checkpoints


@dataclass(frozen=True)
class InclusionCheck:
    seq: int
    tree_size: int
    verified: bool
    problem: str
    kind: str = ""
    actor: str = ""


class CoordinatorSource:
    """The console's reads. `audit_key` is the coordinator's audit public key,
    pinned from the PKI folder: a head signed by any other key fails the check."""

    def __init__(self, address: str, operator: Credentials, officer: Credentials, audit_key: Path):
        self.operator = Operator(address, operator)
        self.officer = Officer(address, officer)
        self.audit_key = load_public_key(audit_key)

    def close(self) -> None:
        self.operator.close()
        self.officer.close()

    # -- page views -------------------------------------------------------------

    def record_view(self, viewer: str, page: str) -> int:
        """The audit event of `viewer` opening `page` (by the console's identity of the viewer's role)."""
        client = self.officer if viewer.startswith("officer:") else self.operator
        reply = client._call(client.stub.RecordView, pb.RecordViewRequest(viewer=viewer, page=page), timeout=30)
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

    # -- officer pages ----------------------------------------------------------

    def events(self, **filters) -> list[dict]:
        """Audit events matching the filters, newest first, their bodies parsed."""
        return [json.loads(body) for _, body in reversed(self.officer.events(**filters))]

    def latest_head(self) -> HeadCheck:
        """The one source of the checkpoint page: today the coordinator's signed
        tree head (GetTreeHead), verified under the pinned key. When the
        coordinator serves witnessed C2SP checkpoints, read and verify the
        cosigned checkpoint here (fedlink/checkpoint.py, `cosigners`)."""
        head = self.officer.tree_head()
        try:
            verify_tree_head(head, self.audit_key)
            verified, problem = True, ""
        except AuditError as e:
            verified, problem = False, str(e)
        return HeadCheck(head.tree_size, head.root_hash.hex(), head.timestamp_ms, head.key_id.hex(), verified,
                         problem)

    def inclusion(self, seq: int) -> InclusionCheck:
        """Is event `seq` in the log the latest signed head covers? The proof is checked here, not trusted."""
        head = self.officer.tree_head()
        try:
            verify_tree_head(head, self.audit_key)
        except AuditError as e:
            return InclusionCheck(seq, head.tree_size, False, str(e))
        if seq >= head.tree_size:
            return InclusionCheck(seq, head.tree_size, False, f"event {seq} is not below the signed size "
                                                              f"{head.tree_size}")
        found = self.officer.events(start=seq, end=seq + 1)
        if not found:
            return InclusionCheck(seq, head.tree_size, False, f"the coordinator returned no event {seq}")
        body = found[0][1]
        event = json.loads(body)
        try:
            verify_inclusion(event_leaf(body), seq, head.tree_size, self.officer.inclusion_proof(seq, head.tree_size),
                             head.root_hash)
            return InclusionCheck(seq, head.tree_size, True, "", event["kind"], event["actor"])
        except ProofError as e:
            return InclusionCheck(seq, head.tree_size, False, str(e), event["kind"], event["actor"])

    def access(self, department: str = "", run_id: str = "") -> dict:
        """Who read what (fedlink/officer.py, access_report), for one department or run when given."""
        events = self.officer.events(department=department)
        if run_id:
            events = [(s, b) for s, b in events if json.loads(b)["details"].get("run_id") == run_id]
        return access_report(events)
