"""The agent's conversation with the coordinator: fetch the project, upload
an extract in batches (resuming where an interrupted upload stopped), pull
the department's own flags and write the caseworkers' worklist."""
from __future__ import annotations

import csv
import io
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from agents.config import AgentConfig
from agents.encoding import key_check
from agents.extract import read_extract
from agents.prepare import PreparedUpload, prepare
from agents.refs import RefCipher, load_key
from fedlink.audit import HeadKeeper, TreeHead, load_public_key
from fedlink.client import CoordinatorClient
from fedlink.files import write_atomic
from fedlink.schema import Project, schema_columns
from fedlink.v1 import coordinator_pb2 as pb
from fedlink.wire import project_from_pb

WORKLIST_EXTRA = ("need", "tier", "status", "since", "transition_until", "reasons", "explanation",
                  "departments_linked", "match_scores", "run_id", "in_extract")
# A flag whose record the current extract no longer holds (the run used an earlier one) is still listed,
# by its record_id, and says so instead of showing blank columns as if the row were empty.
NOT_IN_EXTRACT = "no: the record is not in the current extract (the run used an earlier one); look it up by record_id"


class Agent(CoordinatorClient):
    def __init__(self, config: AgentConfig, *, show_progress: bool = True, retries: int | None = None):
        super().__init__(config.coordinator, config.tls, dev_identity=f"agent:{config.department}",
                         retries=config.retries if retries is None else retries)
        self.config = config
        self.show_progress = show_progress

    def check_log(self) -> None:
        """Check that the coordinator's audit log only grew since this agent last
        looked; raises AuditError (and the agent stops) if history was rewritten."""
        head = self._call(self.stub.GetTreeHead, pb.GetTreeHeadRequest())
        keeper = HeadKeeper(self.config.state_dir)
        if self.config.audit_public_key is not None:
            public = load_public_key(self.config.audit_public_key)
        else:
            public = keeper.public_key(head.public_key_pem)
        keeper.check(TreeHead.from_pb(head), public, lambda old, new: list(self._call(
            self.stub.GetConsistencyProof, pb.GetConsistencyProofRequest(old_size=old, new_size=new)).hashes))

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
        self._retrying("the upload resumes where it stopped", self.check_log)
        project = project or self._retrying("", self.project)
        prepared = prepared or self.prepare(project)
        check = key_check(self.config.secret(), project.project_id)

        def once() -> pb.UploadSummary:
            summary = self._upload_once(project, prepared, check)
            self.check_log()
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
            self.check_log()
            flags = list(self._call(self.stub.PullFlags, request, timeout=300))
            self.check_log()
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
        fh = io.StringIO(newline="")
        w = csv.writer(fh)
        w.writerow(list(frame.columns) + list(WORKLIST_EXTRA))
        for f in flags:
            record_id = cipher.decrypt(f.ref)
            held = record_id in frame.index
            own = frame.loc[record_id].tolist() if held else [record_id] + [""] * (len(frame.columns) - 1)
            reasons = "; ".join(f"{r.rule}: {', '.join(r.indicators)}" for r in f.reasons)
            scores = " ".join(f"{s:.3f}" for s in f.match_scores)
            w.writerow(own + [f.need, f.tier, f.status, f.since, f.transition_until, reasons, f.explanation,
                              f.departments_linked, scores, f.run_id, "yes" if held else NOT_IN_EXTRACT])
        # Whole or not at all: the previous worklist stays until the new one is complete on disk.
        write_atomic(out, fh.getvalue().encode("utf-8"), 0o600)
        return len(flags)

    def record_outcome(self, record_id: str, need: str, outcome: str, run_id: str) -> str:
        """Send a caseworker's review of a flag on one of the department's records."""
        self.check_log()
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
