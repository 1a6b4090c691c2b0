"""The agent's conversation with the coordinator: fetch the project, upload
an extract in batches (resuming where an interrupted upload stopped), pull
the department's own flags and write the caseworkers' worklist."""
from __future__ import annotations

import csv
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from agents.config import AgentConfig
from agents.encoding import key_check
from agents.extract import read_extract
from agents.prepare import PreparedUpload, prepare
from agents.refs import RefCipher, load_key
from fedlink.audit import load_log_key
from fedlink.client import CoordinatorClient
from fedlink.pki import agent_party_name
from fedlink.schema import Project, schema_columns
from fedlink.v1 import coordinator_pb2 as pb
from fedlink.wire import project_from_pb
from fedlink.witnessing import Contact, Roster, Witnessing, witness_at

WORKLIST_EXTRA = ("need", "tier", "status", "since", "transition_until", "reasons", "explanation",
                  "departments_linked", "match_scores", "run_id")


class Agent(CoordinatorClient):
    def __init__(self, config: AgentConfig, *, show_progress: bool = True, retries: int | None = None):
        super().__init__(config.coordinator, config.tls, dev_identity=f"agent:{config.department}",
                         retries=config.retries if retries is None else retries)
        self.config = config
        self.show_progress = show_progress
        self._witnessing_: Witnessing | None = None

    def _witnessing(self) -> Witnessing:
        c = self.config
        if self._witnessing_ is None:
            witness = witness_at(c.witness_key_path, c.state_dir / "witness.json", agent_party_name(c.department))
            self._witnessing_ = Witnessing(self._call, self.stub, witness, Roster.load(c.witnesses),
                                           load_log_key(c.audit_key) if c.audit_key else None,
                                           c.state_dir / "audit-key.vkey")
        return self._witnessing_

    def witness(self) -> Contact:
        """Cosign the coordinator's latest checkpoint after checking it extends the
        last one this agent cosigned; raises AuditError (the agent stops) if not."""
        return self._witnessing().contact()

    def require_witnessed(self) -> list[str]:
        """`witness`, then require the project's quorum of other witnesses vouching
        for this agent's history up to its last completed action (before it uploads
        or acts on flags); raises AuditError saying what is missing."""
        witnessing = self._witnessing()
        return witnessing.require_quorum(witnessing.contact(), witnessing.acted())

    def _acted(self) -> None:
        """A completed action (upload committed, flags pulled): witness the log it is in, and remember it."""
        self._witnessing().record_acted(self.witness())

    def project(self) -> Project:
        return project_from_pb(self._call(self.stub.GetProject, pb.GetProjectRequest(project_id=self.config.project)))

    # -- upload --------------------------------------------------------------

    def prepare(self, project: Project) -> PreparedUpload:
        c = self.config
        frame = read_extract(c.extract, c.department, c.columns, c.sql, identity=schema_columns(project.schema))
        with self._progress() as bar:
            task = bar.add_task(f"encoding {c.department}", total=len(frame))
            return prepare(frame, c.department, project, c.secret(), load_key(c.ref_key_file), c.batch_size,
                           source=str(c.extract), progress=lambda n: bar.advance(task, n))

    def upload(self, project: Project | None = None, prepared: PreparedUpload | None = None) -> pb.UploadSummary:
        """Encode and upload the extract; safe to repeat after any interruption.
        A lost connection is retried with backoff: the upload resumes at the
        first batch the coordinator does not hold, and counts only once the
        coordinator has committed every batch."""
        self._retrying("the upload resumes where it stopped", self.require_witnessed)
        project = project or self._retrying("", self.project)
        prepared = prepared or self.prepare(project)
        check = key_check(self.config.secret(), project.project_id)

        def once() -> pb.UploadSummary:
            summary = self._upload_once(project, prepared, check)
            self._acted()
            return summary

        return self._retrying("the upload resumes where it stopped", once)

    def _upload_once(self, project: Project, prepared: PreparedUpload, check: bytes) -> pb.UploadSummary:
        session = self._call(self.stub.BeginUpload, pb.BeginUploadRequest(
            project_id=project.project_id, schema_digest=prepared.schema_digest, key_check=check,
            upload_digest=prepared.digest, record_count=prepared.record_count,
            batch_count=len(prepared.batches)))
        stored = set(session.stored_batches)
        if not session.committed:
            todo = [b for b in prepared.batches if b.seq not in stored]
            with self._progress() as bar:
                task = bar.add_task(f"uploading {prepared.department}", total=prepared.record_count,
                                    completed=sum(len(b) for b in prepared.batches if b.seq in stored))
                sizes = {b.seq: len(b) for b in prepared.batches}
                for ack in self._call(self.stub.UploadBatches, self._batches(session.upload_id, todo), timeout=None):
                    bar.advance(task, sizes[ack.seq])
        return self._call(self.stub.CommitUpload, pb.CommitUploadRequest(upload_id=session.upload_id))

    @staticmethod
    def _batches(upload_id: str, batches) -> Iterator[pb.RecordBatch]:
        for b in batches:
            yield pb.RecordBatch(
                upload_id=upload_id, seq=b.seq, digest=b.digest,
                records=[pb.EncodedRecord(ref=r, clk=c, indicators=i, household=h)
                         for r, c, i, h in zip(b.refs, b.clks, b.indicators, b.households or [b""] * len(b))])

    # -- flags ---------------------------------------------------------------

    def pull_flags(self, run_id: str = "") -> list[pb.Flag]:
        """Every flag of the run, or an error: a stream cut off midway is pulled
        again whole, so a worklist never holds part of a delivery or a flag twice."""
        request = pb.PullFlagsRequest(project_id=self.config.project, run_id=run_id)

        def once() -> list[pb.Flag]:
            self.require_witnessed()
            flags = list(self._call(self.stub.PullFlags, request, timeout=300))
            self._acted()
            return flags

        return self._retrying("the flags are pulled again whole", once)

    def write_worklist(self, out: Path, run_id: str = "") -> int:
        """Decrypt this department's references and join the flags to its own rows."""
        c = self.config
        flags = self.pull_flags(run_id)
        cipher = RefCipher(load_key(c.ref_key_file), c.project, c.department)
        frame = read_extract(c.extract, c.department, c.columns, c.sql, identity=None).set_index(
            "record_id", drop=False)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(list(frame.columns) + list(WORKLIST_EXTRA))
            for f in flags:
                record_id = cipher.decrypt(f.ref)
                own = frame.loc[record_id].tolist() if record_id in frame.index else [record_id] + [""] * (
                    len(frame.columns) - 1)
                reasons = "; ".join(f"{r.rule}: {', '.join(r.indicators)}" for r in f.reasons)
                scores = " ".join(f"{s:.3f}" for s in f.match_scores)
                w.writerow(own + [f.need, f.tier, f.status, f.since, f.transition_until, reasons, f.explanation,
                                  f.departments_linked, scores, f.run_id])
        return len(flags)

    def record_outcome(self, record_id: str, need: str, outcome: str, run_id: str) -> str:
        """Send a caseworker's review of a flag on one of the department's records."""
        self.witness()
        c = self.config
        ref = RefCipher(load_key(c.ref_key_file), c.project, c.department).encrypt(record_id)
        reply = self._call(self.stub.RecordOutcome, pb.RecordOutcomeRequest(
            project_id=c.project, ref=ref, need=need, outcome=outcome, run_id=run_id))
        return reply.suppressed_until

    @contextmanager
    def _progress(self):
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      disable=not self.show_progress, transient=False) as bar:
            yield bar
