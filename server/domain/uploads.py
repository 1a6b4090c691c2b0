"""Uploads: a department's encoded extract, sent in batches that are each
stored exactly once, then committed as the department's current upload once
every batch is in and its filters look healthy.

The audit log gets one event per upload stream (`upload.batches`) and one
per commit, not one per batch: each names the root of the Merkle tree over
its batches (`batch_root`: leaves are the 4-byte big-endian batch number and
the batch digest, in batch order), so a stream of many small batches cannot
grow the log, and the committed content is still fixed in it. A department
holds at most `open_uploads_per_department` uncommitted uploads; one older
than `upload_expiry_hours` is deleted (and audited) when the department
begins another."""
from __future__ import annotations

import functools
import hmac
import logging
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator, Sequence

import numpy as np

from fedlink import merkle

from fedlink.identity import Identity
from fedlink.rules import load_rulepack
from fedlink.schema import HOUSEHOLD_DEPARTMENTS, HOUSEHOLD_TOKEN_BYTES, Project
from fedlink.wire import batch_digest, upload_digest
from server import faults, queries as q
from server.domain.access import (
    AlreadyExists, Context, DomainError, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied,
    ResourceExhausted, existing_project, guarded, require_member, require_own_department,
)
from server.domain.superseded import purge_superseded
from server.health import HealthReport, encoding_health
from server.matching import pack_filters

MAX_REF_BYTES = 16 + 256
log = logging.getLogger("fedlink.coordinator")


@dataclass(frozen=True)
class IncomingRecord:
    ref: bytes
    clk: bytes
    indicators: dict[str, int]
    household: bytes = b""  # keyed household token (agents/households.py), household registers only


@dataclass(frozen=True)
class FieldQuality:
    """Counts of one field's values the agent could not use (agents/quality.py); never a value."""

    column: str
    kind: str
    blank: int = 0
    unreadable: int = 0
    invalid_ids: int = 0
    pinyin_only: int = 0
    converted: int = 0


@dataclass(frozen=True)
class ExtractQuality:
    """The data-quality summary an agent sends with its upload, kept in the upload.begin audit event."""

    records: int
    fields: tuple[FieldQuality, ...]
    department: str = ""  # set when read back for a report
    upload_id: str = ""

    def check(self, record_count: int) -> None:
        if self.records != record_count:
            raise InvalidArgument(f"the quality summary counts {self.records} records, the upload declares "
                                  f"{record_count}")
        if len(self.fields) > 64:
            raise InvalidArgument(f"the quality summary has {len(self.fields)} fields; at most 64")
        for f in self.fields:
            if not 0 < len(f.column) <= 64 or len(f.kind) > 32:
                raise InvalidArgument("a quality summary field needs a column name of 1-64 characters")
            if max(f.blank, f.unreadable, f.invalid_ids, f.pinyin_only, f.converted) > self.records:
                raise InvalidArgument(f"the quality summary of field {f.column} counts more values than records")

    def details(self) -> dict:
        """For the audit event: counts only."""
        return {"records": self.records, "fields": [{k: v for k, v in vars(f).items()} for f in self.fields]}

    @classmethod
    def from_details(cls, details: dict, department: str, upload_id: str) -> ExtractQuality:
        return cls(details["records"], tuple(FieldQuality(**f) for f in details["fields"]), department, upload_id)


@dataclass(frozen=True)
class UploadSession:
    upload_id: str
    stored_batches: tuple[int, ...]  # batches already stored: a resumed upload sends only the others
    committed: bool


@dataclass(frozen=True)
class StoredBatch:
    records: int      # records stored by this call (0 for a duplicate)
    duplicate: bool   # the batch was stored before, with the same content
    project_id: str = ""


def batch_root(batches: Sequence[tuple[int, bytes]]) -> str:
    """The Merkle root (hex) over (batch number, digest) pairs, in batch order."""
    leaves = [merkle.leaf_hash(seq.to_bytes(4, "big") + digest) for seq, digest in sorted(batches)]
    return merkle.root_from_leaf_hashes(leaves).hex()


@dataclass
class BatchStream:
    """The batches one UploadBatches call stores, per upload, for its one audit event.

    The call's batches are read and checked on a thread of their own and up to
    `in_flight` of them wait for the writer at once, each acknowledged as soon
    as its round commits: an agent's batches go on arriving instead of
    waiting a round trip each, and no acknowledgement waits for the next batch."""

    uploads: Uploads
    who: Identity
    in_flight: int = 8
    stored: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        self._slots = threading.Semaphore(self.in_flight)
        self._lock = threading.Lock()
        self._stopped = False
        self._queued: queue.SimpleQueue = queue.SimpleQueue()  # (upload_id, seq, digest, future), an error, or None

    def store_each(self, batches: Iterable[tuple[str, int, bytes, Sequence[IncomingRecord]]]
                   ) -> Iterator[tuple[int, StoredBatch]]:
        """Each (upload_id, seq, digest, records), stored exactly once: (seq, what was stored), in order."""
        threading.Thread(target=self._submit_each, args=(batches,), daemon=True,
                         name=f"upload-batches-{self.who.department}").start()
        try:
            while (item := self._queued.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                self._slots.release()
                yield self._settle(*item)
        finally:
            self._stop()

    def _submit_each(self, batches) -> None:
        try:
            for upload_id, seq, digest, records in batches:
                self._slots.acquire()
                with self._lock:
                    if self._stopped:
                        return
                    self._queued.put((upload_id, seq, digest,
                                      self.uploads.submit_batch(self.who, upload_id, seq, digest, records)))
        except Exception as e:  # a refused batch, or the stream cut: raised by store_each in its turn
            self._queued.put(e)
        else:
            self._queued.put(None)

    def _stop(self) -> None:
        """The call ends (a batch refused, the stream cut): nothing more is queued, and what already
        was is written all the same and counted in the audit."""
        with self._lock:
            self._stopped = True
        self._slots.release()  # a reader waiting for a slot wakes and sees the stop
        while True:
            try:
                item = self._queued.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, tuple):
                with suppress(Exception):  # refused: audited as such by batch_stored
                    self._settle(*item)

    def _settle(self, upload_id: str, seq: int, digest: bytes, future: Future) -> tuple[int, StoredBatch]:
        result = self.uploads.batch_stored(self.who, seq, future)
        tally = self.stored.setdefault(upload_id, {"project_id": result.project_id, "batches": [], "records": 0,
                                                   "duplicates": 0})
        if result.duplicate:
            tally["duplicates"] += 1
        else:
            tally["batches"].append((seq, digest))
            tally["records"] += result.records
        return seq, result


@dataclass(frozen=True)
class UploadSummary:
    upload_id: str
    department: str
    record_count: int
    committed: bool
    # Against the upload it replaced as the department's current one, if any:
    replaced_upload_id: str = ""
    records_kept: int = 0
    records_added: int = 0
    records_removed: int = 0
    health_warnings: tuple[str, ...] = field(default=())


class Uploads:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    @contextmanager
    def stream(self, who: Identity) -> Iterator[BatchStream]:
        """Batches stored through one call; when it ends, however it ends, one audit event per upload."""
        stream = BatchStream(self, who)
        try:
            yield stream
        finally:
            with self.ctx.store.write() as conn:
                for upload_id, tally in stream.stored.items():
                    seqs = [seq for seq, _ in tally["batches"]]
                    self.ctx.store.audit(
                        conn, str(who), "upload.batches", project_id=tally["project_id"],
                        department=who.department, upload_id=upload_id, batches=len(seqs),
                        records=tally["records"], duplicates=tally["duplicates"],
                        first_seq=min(seqs, default=None), last_seq=max(seqs, default=None),
                        batch_root=batch_root(tally["batches"]))

    @guarded("BeginUpload", "agent")
    def begin(self, who: Identity, project_id: str, schema_digest: str, key_check: bytes, digest: bytes,
              record_count: int, batch_count: int, quality: ExtractQuality | None = None) -> UploadSession:
        self._check_counts(digest, record_count, batch_count)
        if quality is not None:
            quality.check(record_count)
        with self.ctx.store.write() as conn:
            project = existing_project(conn, project_id)
            require_member(who, project)
            if schema_digest != project.digest():
                raise FailedPrecondition(
                    f"the extract was encoded with schema {schema_digest[:12]}, the project's is "
                    f"{project.digest()[:12]}: fetch the project again and re-encode")
            self._check_key(conn, who, project_id, key_check)
            self._expire_open(conn, who, project_id)
            row = q.upload_with_digest(conn, project_id, who.department, digest)
            if row is None:
                self._check_open_count(conn, who, project_id)
            if row is not None:
                stored = q.stored_batch_seqs(conn, row.upload_id)
                self.ctx.store.audit(conn, str(who), "upload.resume", project_id=project_id,
                                     department=who.department, upload_id=row.upload_id, stored_batches=len(stored))
                session = UploadSession(row.upload_id, tuple(stored), row.state != "open")
            else:
                session = UploadSession(uuid.uuid4().hex, (), False)
                q.insert_upload(conn, upload_id=session.upload_id, project_id=project_id, department=who.department,
                                upload_digest=digest, schema_digest=schema_digest, record_count=record_count,
                                batch_count=batch_count)
                self.ctx.store.audit(conn, str(who), "upload.begin", project_id=project_id,
                                     department=who.department, upload_id=session.upload_id,
                                     record_count=record_count, batch_count=batch_count, upload_digest=digest.hex(),
                                     quality=quality.details() if quality else None)
        kind = "upload.resume" if row is not None else "upload.begin"
        log.info("%s of %s for %s: %d records in %d batches%s", kind.replace(".", " "), who.department, project_id,
                 record_count, batch_count, f", {len(session.stored_batches)} stored before" if row else "",
                 extra={"event": kind, "project_id": project_id, "department": who.department,
                        "upload_id": session.upload_id, "records": record_count, "batches": batch_count})
        return session

    def _expire_open(self, conn, who: Identity, project_id: str) -> None:
        horizon = time.time() - self.ctx.limits.upload_expiry_hours * 3600
        for upload_id, created_at in q.open_uploads(conn, project_id, who.department):
            if created_at < horizon:
                records = q.delete_upload(conn, upload_id)
                self.ctx.store.audit(conn, str(who), "upload.expired", project_id=project_id,
                                     department=who.department, upload_id=upload_id, records_deleted=records,
                                     opened_at=created_at, expiry_hours=self.ctx.limits.upload_expiry_hours)

    def _check_open_count(self, conn, who: Identity, project_id: str) -> None:
        most = self.ctx.limits.open_uploads_per_department
        opened = q.open_uploads(conn, project_id, who.department)
        if len(opened) >= most:
            raise ResourceExhausted(
                f"{who.department} has {len(opened)} uploads open in project {project_id}, the most this "
                f"coordinator keeps (--max-open-uploads {most}): commit one, or resend an extract already begun; "
                f"an open upload expires {self.ctx.limits.upload_expiry_hours} h after it began")

    def _check_counts(self, digest: bytes, record_count: int, batch_count: int) -> None:
        if len(digest) != 32:
            raise InvalidArgument("upload_digest must be a 32-byte SHA-256")
        if record_count < 0 or batch_count < 0 or (record_count == 0) != (batch_count == 0):
            raise InvalidArgument(f"record_count {record_count} and batch_count {batch_count} do not agree")
        if record_count > self.ctx.limits.max_records_per_upload:
            raise ResourceExhausted(
                f"the upload declares {record_count} records; this coordinator takes at most "
                f"{self.ctx.limits.max_records_per_upload} per department upload (--max-records-per-upload)")
        if batch_count > record_count:
            raise InvalidArgument(f"batch_count {batch_count} exceeds record_count {record_count}: "
                                  "every batch holds at least one record")

    def _check_key(self, conn, who: Identity, project_id: str, key_check: bytes) -> None:
        if len(key_check) != 32:
            raise InvalidArgument("key_check must be a 32-byte HMAC-SHA-256")
        pinned = q.pinned_key_check(conn, project_id)
        if pinned.key_check is None:
            # The first department to upload pins the value; every later one must match it.
            q.pin_key_check(conn, project_id, key_check, who.department)
            self.ctx.store.audit(conn, str(who), "project.key_check_pinned", project_id=project_id,
                                 department=who.department)
        elif not hmac.compare_digest(pinned.key_check, key_check):
            raise PermissionDenied(
                f"the key-check value of {who.department} differs from the one {pinned.key_check_by} pinned for "
                f"project {project_id}: this department holds a different project secret; ask the project's "
                "departments for the shared secret")

    @guarded("UploadBatches", "agent")
    def submit_batch(self, who: Identity, upload_id: str, seq: int, digest: bytes,
                     records: Sequence[IncomingRecord]) -> Future:
        """Check one batch and queue it for the writer (server/admission.py); its future is `batch_stored`'s."""
        faults.pause(f"upload.batch.{seq}")  # the upload tests' kill point; off unless asked for
        if len(records) > self.ctx.limits.max_batch_records:
            raise ResourceExhausted(
                f"batch {seq} holds {len(records)} records; this coordinator takes at most "
                f"{self.ctx.limits.max_batch_records} per batch (--max-batch-records): lower batch_size in the "
                "agent's config")
        with self.ctx.store.read() as conn:  # checked before its turn to write: the writer does only the writing
            up = self._batch_upload(conn, who, upload_id, seq)
            validate_batch(existing_project(conn, up.project_id), who.department, seq, digest, records)
        return self.ctx.writes.submit(f"{up.project_id}/{who.department}", lambda conn: self._store_batch(conn, up, seq, digest, records))

    @guarded("UploadBatches", "agent")
    def batch_stored(self, who: Identity, seq: int, future: Future) -> StoredBatch:
        """What the writer stored of a batch `submit_batch` queued, once its round has committed."""
        try:
            return future.result()
        except DomainError:
            raise
        except Exception as e:  # the unique constraint: a reference repeated across batches
            if not q.is_repeated_reference(e):
                raise
        raise InvalidArgument(f"batch {seq} repeats a record reference already stored in this upload: "
                              "record_id must be unique in the extract")

    @staticmethod
    def _batch_upload(conn, who: Identity, upload_id: str, seq: int):
        up = q.upload(conn, upload_id)
        if up is None:
            raise NotFound(f"upload {upload_id!r} does not exist; call BeginUpload first")
        require_own_department(who, up.department, f"upload {upload_id}")
        if not 0 <= seq < up.batch_count:  # before any lookup: seq is 32-bit unsigned on the wire
            raise InvalidArgument(f"batch {seq} is outside 0..{up.batch_count - 1} of upload {upload_id}")
        return up

    @staticmethod
    def _store_batch(conn, up, seq: int, digest: bytes, records: Sequence[IncomingRecord]) -> StoredBatch:
        """In the writer's transaction: the upload as it is now (another batch may have landed)."""
        upload_id = up.upload_id
        prior = q.batch_digest_at(conn, upload_id, seq)
        if prior is not None:
            if prior != digest:
                raise AlreadyExists(f"batch {seq} of upload {upload_id} is stored with other content; "
                                    "an extract cannot change mid-upload: start a new upload")
            return StoredBatch(0, True, up.project_id)
        state = q.upload_state(conn, upload_id)
        if state != "open":
            raise FailedPrecondition(f"upload {upload_id} is {state or 'deleted'}; it takes no more batches")
        if q.stored_record_count(conn, upload_id) + len(records) > up.record_count:
            raise InvalidArgument(f"batch {seq} takes upload {upload_id} past its declared "
                                  f"{up.record_count} records")
        q.insert_batch(conn, upload_id, seq, digest, records)
        return StoredBatch(len(records), False, up.project_id)

    @guarded("CommitUpload", "agent")
    def commit(self, who: Identity, upload_id: str, *, dry_run: bool = False) -> UploadSummary:
        if dry_run:
            return self._dry_run(who, upload_id)
        summary, project_id = self._commit(who, upload_id)
        if summary.replaced_upload_id:  # the one place a department's upload is superseded
            purge_superseded(self.ctx, project_id, summary.department, upload_id)
        return summary

    def _commit(self, who: Identity, upload_id: str) -> tuple[UploadSummary, str]:
        # Before the write transaction, so that it stays short: an upload whose every batch is stored
        # cannot change any more, and the health of 2M filters takes seconds no other writer should wait.
        with self.ctx.store.read() as conn:
            up = q.upload(conn, upload_id)
            health = None
            if up is not None and up.state == "open" and up.department == who.department:
                self._check_complete(conn, up)
                health = self._encoding_health(conn, up)
        with self.ctx.store.write() as conn:
            up = q.upload(conn, upload_id)
            if up is None:
                raise NotFound(f"upload {upload_id!r} does not exist")
            require_own_department(who, up.department, f"upload {upload_id}")
            summary = UploadSummary(upload_id, up.department, up.record_count, committed=True)
            if up.state == "superseded":
                # The department sends an extract it had sent before (same digest): it is current again.
                summary = self._replace_current(conn, who, up, summary, reinstated=True)
                _log_commit(summary, up.project_id, (), reinstated=True)
                return summary, up.project_id
            if up.state != "open":
                return summary, up.project_id
            if health is None:  # it was committed or refused in between: checked again, in the transaction
                self._check_complete(conn, up)
                health = self._encoding_health(conn, up)
            # Recorded whether or not the upload is accepted: a refusal leaves its figures too.
            self.ctx.store.audit(conn, str(who), "upload.health", project_id=up.project_id,
                                 department=up.department, upload_id=upload_id, accepted=not health.refusals,
                                 **health.figures())
            if not health.refusals:
                summary = self._replace_current(conn, who, up, summary)
        if health.refusals:
            log.warning("upload %s of %s for %s not committed: its filters look broken", upload_id, up.department,
                        up.project_id, extra={"event": "upload.refused", "project_id": up.project_id,
                                              "department": up.department, "upload_id": upload_id})
            # The batches stay stored and the upload open; the department's previous upload stays current.
            raise FailedPrecondition(
                f"upload {upload_id} of {up.department} was not committed, its filters look broken: "
                f"{'; '.join(health.refusals)}. Its batches are kept and the previous upload stays in use; "
                "fix the extract or the agent's encoding and upload again")
        _log_commit(summary, up.project_id, health.warnings)
        return replace(summary, health_warnings=tuple(health.warnings)), up.project_id

    @staticmethod
    def _check_complete(conn, up) -> None:
        got = q.stored_batches(conn, up.upload_id)
        missing = sorted(set(range(up.batch_count)) - {b.seq for b in got})
        if missing:
            raise FailedPrecondition(f"upload {up.upload_id} lacks batches {missing[:10]}"
                                     f"{' ...' if len(missing) > 10 else ''}; resume the upload")
        if sum(b.record_count for b in got) != up.record_count:
            raise FailedPrecondition(f"upload {up.upload_id} holds {sum(b.record_count for b in got)} records, "
                                     f"declared {up.record_count}")
        if upload_digest(up.schema_digest, [b.digest for b in got]) != up.upload_digest:
            raise FailedPrecondition(f"upload {up.upload_id}: the batches do not add up to the declared digest")

    def _dry_run(self, who: Identity, upload_id: str) -> UploadSummary:
        """What committing would do to the department's current upload, with nothing changed:
        the agent's guard against an extract that would remove most of the department."""
        with self.ctx.store.read() as conn:
            up = q.upload(conn, upload_id)
            if up is None:
                raise NotFound(f"upload {upload_id!r} does not exist")
            require_own_department(who, up.department, f"upload {upload_id}")
            if up.state == "open":
                self._check_complete(conn, up)
            return UploadSummary(upload_id, up.department, up.record_count, committed=up.state == "committed",
                                 **self._comparison(conn, up))

    @staticmethod
    def _comparison(conn, up) -> dict:
        """`up` against the department's current upload, by record reference."""
        previous = q.committed_upload(conn, up.project_id, up.department)
        if not previous or previous == up.upload_id:
            return {"replaced_upload_id": "", "records_kept": up.record_count if previous else 0,
                    "records_added": 0 if previous else up.record_count, "records_removed": 0}
        kept = q.records_in_both(conn, up.upload_id, previous)
        return {"replaced_upload_id": previous, "records_kept": kept, "records_added": up.record_count - kept,
                "records_removed": q.upload_record_count(conn, previous) - kept}

    def _replace_current(self, conn, who: Identity, up, summary: UploadSummary, *,
                         reinstated: bool = False) -> UploadSummary:
        """Make `up` the department's current upload: the next run uses it and
        not the one before, whose records are then no longer linked or flagged
        (their open flags resolve). Records in both, matched by their stable
        encrypted reference, are the same records: nothing is duplicated."""
        comparison = self._comparison(conn, up)
        previous, short_lived = comparison["replaced_upload_id"], 0
        if previous:
            # Records that came with the previous upload and are gone again: what a probe leaves behind.
            short_lived = q.records_short_lived(conn, previous, up.upload_id)
            q.set_upload_state(conn, previous, "superseded")
        q.mark_came_with(conn, up.upload_id, previous or None, again=reinstated)
        q.set_upload_state(conn, up.upload_id, "committed")
        batches = [(b.seq, b.digest) for b in q.stored_batches(conn, up.upload_id)]
        self.ctx.store.audit(conn, str(who), "upload.commit", project_id=up.project_id, department=up.department,
                             upload_id=up.upload_id, records=up.record_count, upload_digest=up.upload_digest.hex(),
                             batches=len(batches), batch_root=batch_root(batches), reinstated=reinstated,
                             records_short_lived=short_lived, **comparison)
        return replace(summary, **comparison)

    @staticmethod
    def _encoding_health(conn, up) -> HealthReport:
        """Encoding health (server/health.py) of an upload's stored filters."""
        project = existing_project(conn, up.project_id)
        faults.pause("upload.health")
        bits = project.schema.filter_bits
        packed = np.empty((up.record_count, bits // 64), dtype=np.uint64)
        filled = 0
        for part in q.upload_filter_parts(conn, up.upload_id):
            if filled + len(part) > len(packed):
                raise RuntimeError(f"upload {up.upload_id} holds more than its {up.record_count} declared records")
            packed[filled:filled + len(part)] = pack_filters(part, bits)
            filled += len(part)
        return encoding_health(packed[:filled])


def _log_commit(s: UploadSummary, project_id: str, warnings, reinstated: bool = False) -> None:
    log.info("upload %s of %s for %s committed%s: %d records (%d kept, %d added, %d removed)%s", s.upload_id,
             s.department, project_id, " (an earlier extract, current again)" if reinstated else "", s.record_count,
             s.records_kept, s.records_added, s.records_removed,
             f"; {len(warnings)} encoding warnings" if warnings else "",
             extra={"event": "upload.commit", "project_id": project_id, "department": s.department,
                    "upload_id": s.upload_id, "records": s.record_count, "records_kept": s.records_kept,
                    "records_added": s.records_added, "records_removed": s.records_removed,
                    "replaced_upload_id": s.replaced_upload_id, "encoding_warnings": len(warnings)})


@functools.lru_cache(maxsize=64)
def _evaluates_households(rules_toml: str) -> bool:
    """Parsed once per rule pack text, not once per batch."""
    return bool(load_rulepack(rules_toml).household_indicators)


def validate_batch(project: Project, department: str, seq: int, digest: bytes,
                   records: Sequence[IncomingRecord]) -> None:
    width = project.schema.filter_bytes
    declared = set(project.departments[department])
    # Household tokens are refused where the pack evaluates no household or the department numbers none.
    households = department in HOUSEHOLD_DEPARTMENTS and _evaluates_households(project.rules_toml)
    refs = set()
    for i, r in enumerate(records):
        where = f"batch {seq}, record {i}"
        if len(r.clk) != width:
            raise InvalidArgument(f"{where}: filter is {len(r.clk)} bytes, the project's schema says {width} "
                                  f"({project.schema.filter_bits} bits)")
        if not 16 < len(r.ref) <= MAX_REF_BYTES:
            raise InvalidArgument(f"{where}: reference of {len(r.ref)} bytes is not an encrypted reference")
        if r.ref in refs:
            raise InvalidArgument(f"{where}: reference repeated within the batch: record_id must be unique")
        refs.add(r.ref)
        undeclared = set(r.indicators) - declared
        if undeclared:
            raise InvalidArgument(f"{where}: indicators {sorted(undeclared)} are not declared for {department} "
                                  f"in project {project.project_id}; declared: {sorted(declared)}")
        bad = [k for k, v in r.indicators.items() if v not in (0, 1)]
        if bad:
            raise InvalidArgument(f"{where}: indicator {bad[0]!r} must be 0 or 1")
        if r.household and not households:
            raise InvalidArgument(f"{where}: a household token is not accepted from {department} in project "
                                  f"{project.project_id} (only {', '.join(HOUSEHOLD_DEPARTMENTS)}, and only "
                                  "when the rule pack has household indicators)")
        if r.household and len(r.household) != HOUSEHOLD_TOKEN_BYTES:
            raise InvalidArgument(f"{where}: a household token is {HOUSEHOLD_TOKEN_BYTES} bytes, not "
                                  f"{len(r.household)}")
    expected = batch_digest((r.ref, r.clk, r.indicators, r.household) for r in records)
    if expected != digest:
        raise InvalidArgument(f"batch {seq}: digest does not match its records (corrupted in transit?)")
