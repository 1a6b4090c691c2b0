"""The agent's conversation with the coordinator: fetch the project, upload
an extract in batches (resuming where an interrupted upload stopped), pull
the department's own flags and write the caseworkers' worklist."""
from __future__ import annotations

import csv
import logging
import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import grpc
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from agents.config import AgentConfig
from agents.encoding import key_check
from agents.extract import read_extract
from agents.prepare import PreparedUpload, prepare
from agents.refs import RefCipher, load_key
from fedlink.audit import HeadKeeper, TreeHead, load_public_key
from fedlink.pki import channel_credentials
from fedlink.schema import Project, schema_columns
from fedlink.v1 import coordinator_pb2 as pb
from fedlink.v1 import coordinator_pb2_grpc as pb_grpc
from fedlink.wire import project_from_pb

log = logging.getLogger("fedlink.agent")

# RESOURCE_EXHAUSTED is retried only when the coordinator says when (its rate limit):
# a message or upload over a size limit stays over it.
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
WORKLIST_EXTRA = ("need", "tier", "status", "since", "transition_until", "reasons", "explanation",
                  "departments_linked", "match_scores", "run_id")


class AgentError(RuntimeError):
    pass


class AgentUnavailable(AgentError):
    """The coordinator stayed unreachable through every retry."""


def _retry_after_s(error: grpc.RpcError) -> float | None:
    """The wait a rate-limited call was told (trailing metadata retry-after-ms), if any."""
    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    try:
        for key, value in error.trailing_metadata() or ():
            if key == "retry-after-ms":
                return int(value) / 1000.0
    except (AttributeError, ValueError):
        return None
    return None


def open_channel(config: AgentConfig) -> grpc.Channel:
    options = [("grpc.max_send_message_length", 16 * 1024 * 1024),
               ("grpc.max_receive_message_length", 16 * 1024 * 1024)]
    if config.tls is not None:
        return grpc.secure_channel(config.coordinator, channel_credentials(config.tls), options=options)
    return grpc.insecure_channel(config.coordinator, options=options)


class Agent:
    def __init__(self, config: AgentConfig, *, show_progress: bool = True, retries: int | None = None):
        self.config = config
        self.show_progress = show_progress
        self.retries = config.retries if retries is None else retries
        self.channel = open_channel(config)
        self.stub = pb_grpc.CoordinatorStub(self.channel)
        # Only with insecure = true on loopback: the coordinator has no certificate to read.
        self.metadata = (("fedlink-dev-identity", f"agent:{config.department}"),) if config.tls is None else ()

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, fn, request, timeout=60):
        return fn(request, timeout=timeout, metadata=self.metadata)

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

    def _retrying(self, resumes: str, fn):
        """Call fn, retrying with exponential backoff (and jitter) while the
        coordinator is unreachable or asks to be called later (rate limit);
        after `retries` attempts, an AgentUnavailable that says what to do."""
        attempt = 0
        while True:
            try:
                return fn()
            except grpc.RpcError as e:
                pushback = _retry_after_s(e)
                if not (e.code() in RETRYABLE or pushback is not None):
                    raise
                if attempt >= self.retries:
                    raise AgentUnavailable(
                        f"the coordinator at {self.config.coordinator} is still unreachable after {attempt} "
                        f"retries ({e.code().name}: {e.details()}); nothing is counted until the coordinator "
                        "commits it: run the same command again to resume") from e
                attempt += 1
                wait = max(pushback or 0.0, min(30.0, 0.5 * 2 ** attempt) * random.uniform(0.8, 1.2))
                log.warning("coordinator unreachable (%s: %s); retrying in %.1f s (attempt %d of %d)%s",
                            e.code().name, (e.details() or "")[:120], wait, attempt, self.retries,
                            f", {resumes}" if resumes else "")
                time.sleep(wait)

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
                for ack in self.stub.UploadBatches(self._batches(session.upload_id, todo), metadata=self.metadata):
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
            flags = list(self.stub.PullFlags(request, timeout=300, metadata=self.metadata))
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
