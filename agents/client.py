"""The agent's conversation with the coordinator: fetch the project, upload
an extract in batches (resuming where an interrupted upload stopped), pull
the department's own flags and write the caseworkers' worklist."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dataclasses import replace

from agents import worklist
from agents.config import AgentConfig
from agents.encoding import key_check
from agents.extract import Extract, read_extract
from agents.guards import UploadRefused, quality_refusals, removal_refusal
from agents.prepare import PreparedUpload, prepare
from agents.quality import QualitySummary, QualityTally, column_kinds
from agents.refs import RefCipher, load_key
from agents.uploads import UploadCopies, say_missing
from fedlink.audit import load_log_key
from fedlink.client import CoordinatorClient
from fedlink.files import keep_private
from fedlink.pki import agent_party_name
from fedlink.schema import Project, schema_columns
from fedlink.v1 import coordinator_pb2 as pb
from fedlink.wire import project_from_pb
from fedlink.witnessing import Contact, Roster, Witnessing, witness_at


def commit_deadline(records: int) -> float:
    """Seconds to wait for CommitUpload: it checks the whole upload's encoding health first, about
    5.5 us a record on a quiet 2-core machine (docs/operations.md: 10.7 s for 1.96M records), so a
    20M-record upload's check alone would pass a fixed 60 s. Four times that rate, on top of 60 s."""
    return 60.0 + 22e-6 * records

class Agent(CoordinatorClient):
    def __init__(self, config: AgentConfig, *, show_progress: bool = True, retries: int | None = None):
        super().__init__(config.coordinator, config.tls, dev_identity=f"agent:{config.department}",
                         retries=config.retries if retries is None else retries, server_name=config.server_name,
                         health_url=config.coordinator_health or "")
        self.config = config
        self.show_progress = show_progress
        keep_private()  # worklists, state and keys are the department's alone (fedlink/files.py)
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
        """The project's settings, fetched through a coordinator or store outage like every other call."""
        request = pb.GetProjectRequest(project_id=self.config.project)
        return self._retrying("", lambda: project_from_pb(self._call(self.stub.GetProject, request)))

    # -- upload --------------------------------------------------------------

    def extract(self, project: Project) -> Extract:
        """The extract, read frame by frame as it is iterated (agents/extract)."""
        c = self.config
        return Extract(c.extract, c.department, c.columns, c.sql, identity=schema_columns(project.schema),
                       encoding=c.encoding, sheet=c.sheet)

    def prepare(self, project: Project) -> PreparedUpload:
        """Read, normalise and encode the extract, with its quality summary; nothing is sent.
        Only the batches' digests are held: the batches are made again as they are sent."""
        c = self.config
        tally = QualityTally(column_kinds((f.kind, f.column) for f in project.schema.fields))
        with self._progress() as bar:
            task = bar.add_task(f"encoding {c.department}", total=None)
            prepared = prepare(lambda: self.extract(project), c.department, project, c.secret(),
                               load_key(c.ref_key_file), c.batch_size, source=str(c.extract),
                               progress=lambda n: bar.advance(task, n), script=c.script, observe=tally.add)
        return replace(prepared, quality=tally.summary())

    def upload(self, project: Project | None = None, prepared: PreparedUpload | None = None, *,
               force: bool = False) -> pb.UploadSummary:
        """Encode and upload the extract; safe to repeat after any interruption.
        A lost connection is retried with backoff: the upload resumes at the
        first batch the coordinator does not hold, and counts only once the
        coordinator has committed every batch. Unless `force`, the guards
        (agents/guards.py) refuse, with UploadRefused, an extract too
        unreadable to send or one that would remove too many current records."""
        self._retrying("the upload resumes where it stopped", self.require_witnessed)
        project = project or self.project()
        prepared = prepared or self.prepare(project)
        refusals = quality_refusals(prepared.quality, self.config) if prepared.quality and not force else []
        if refusals:
            raise UploadRefused(prepared.department, refusals, sent=False)
        check = key_check(self.config.secret(), project.project_id)
        copies = UploadCopies(self.config.state_dir)
        copies.save(prepared.digest.hex(), self._own_rows())  # before sending: a worklist may need it

        def once() -> pb.UploadSummary:
            summary = self._upload_once(project, prepared, check, force)
            copies.committed(summary.upload_id, prepared.digest.hex())
            self._acted()
            return summary

        return self._retrying("the upload resumes where it stopped", once)

    def _upload_once(self, project: Project, prepared: PreparedUpload, check: bytes, force: bool = False
                     ) -> pb.UploadSummary:
        session = self._call(self.stub.BeginUpload, pb.BeginUploadRequest(
            project_id=project.project_id, schema_digest=prepared.schema_digest, key_check=check,
            upload_digest=prepared.digest, record_count=prepared.record_count,
            batch_count=len(prepared.batches), quality=quality_to_pb(prepared.quality)))
        stored = set(session.stored_batches)
        commit = pb.CommitUploadRequest(upload_id=session.upload_id)
        if session.committed:
            return self._call(self.stub.CommitUpload, commit)
        sizes = prepared.batches.sizes
        with self._progress() as bar:
            task = bar.add_task(f"sending {prepared.department}", total=prepared.record_count,
                                completed=sum(sizes[s] for s in stored if s < len(sizes)))
            requests = _Requests(self._batches(session.upload_id, prepared.batches.without(stored)))
            try:
                for ack in self._call(self.stub.UploadBatches, iter(requests), timeout=None):
                    bar.advance(task, sizes[ack.seq])
            finally:
                requests.reraise()  # the extract failed while sending: its error, not gRPC's CANCELLED
            if not force:  # a dry run first: what the commit would remove from the current upload
                dry = self._call(self.stub.CommitUpload,
                                 pb.CommitUploadRequest(upload_id=session.upload_id, dry_run=True),
                                 timeout=commit_deadline(prepared.record_count))
                refusal = removal_refusal(dry.records_kept, dry.records_removed, self.config)
                if refusal:
                    raise UploadRefused(prepared.department, [refusal], sent=True)
            # A step of its own: the coordinator checks the whole upload before it counts.
            step = bar.add_task("committing (the coordinator checks the upload)", total=1)
            summary = self._call(self.stub.CommitUpload, commit, timeout=commit_deadline(prepared.record_count))
            bar.advance(step, 1)
        return summary

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

    def _own_rows(self) -> Extract:
        """The department's whole rows, as a worklist shows them."""
        c = self.config
        return Extract(c.extract, c.department, c.columns, c.sql, identity=None, encoding=c.encoding, sheet=c.sheet)

    def write_worklist(self, out: Path, run_id: str = "") -> int:
        """Decrypt this department's references and join the flags to its own rows (agents/worklist.py):
        those of the upload the flag's run used, from the agent's copy (agents/uploads.py), or, where
        that copy is gone, the current extract's, saying so once."""
        c = self.config
        flags = self.pull_flags(run_id)
        cipher = RefCipher(load_key(c.ref_key_file), c.project, c.department)
        copies = UploadCopies(c.state_dir)
        frames = {u: copies.rows(u) if u else None for u in dict.fromkeys(f.upload_id for f in flags)}
        missing = [u for u, frame in frames.items() if frame is None]
        if missing or not flags:  # the current extract is read only where it is needed
            for upload_id in missing:
                say_missing(upload_id, copies.folder)
            current = read_extract(c.extract, c.department, c.columns, c.sql, identity=None,
                                   encoding=c.encoding, sheet=c.sheet).set_index("record_id", drop=False)
            frames = {u: current if frame is None else frame for u, frame in frames.items()} or {"": current}
        columns = list(next(iter(frames.values())).columns)
        worklist.write(out, columns, [(cipher.decrypt(f.ref), f, frames[f.upload_id]) for f in flags], c.language)
        return len(flags)

    def record_outcome(self, record_id: str, need: str, outcome: str, run_id: str) -> str:
        """Send a caseworker's review of a flag; the date until which it is not raised again, if any."""
        return self.review(record_id, need, outcome, run_id).suppressed_until

    def review(self, record_id: str, need: str, outcome: str, run_id: str) -> pb.RecordOutcomeResponse:
        """Send a caseworker's review of a flag on one of the department's records;
        the reply names the earlier review it supersedes, if any."""
        self.witness()
        c = self.config
        ref = RefCipher(load_key(c.ref_key_file), c.project, c.department).encrypt(record_id)
        return self._call(self.stub.RecordOutcome, pb.RecordOutcomeRequest(
            project_id=c.project, ref=ref, need=need, outcome=outcome, run_id=run_id))

    @contextmanager
    def _progress(self):
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=Console(stderr=True), disable=not self.show_progress, transient=False) as bar:
            yield bar


class _Requests:
    """A request stream that keeps the exception it stopped on: gRPC reads the
    stream on its own thread and reports a failure there only as CANCELLED."""

    def __init__(self, requests: Iterator):
        self._requests, self._failure = requests, None

    def __iter__(self):
        try:
            yield from self._requests
        except Exception as e:
            self._failure = e
            raise

    def reraise(self) -> None:
        if self._failure is not None:
            raise self._failure


def quality_to_pb(summary: QualitySummary | None) -> pb.UploadQuality | None:
    """The data-quality summary as sent with BeginUpload: counts only."""
    if summary is None:
        return None
    return pb.UploadQuality(records=summary.records, fields=[pb.FieldQuality(
        column=f.column, kind=f.kind, blank=f.blank, unreadable=f.unreadable, invalid_ids=f.invalid_ids,
        pinyin_only=f.pinyin_only, converted=f.converted) for f in summary.fields])
