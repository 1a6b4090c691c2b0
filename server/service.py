"""The coordinator's domain logic: projects, uploads, runs, reports and flags.

Every method takes the caller's `Identity`, read by the servicer from the
verified client certificate, and checks the role here, so the rules hold and
are tested without a network. Failures are `DomainError`s that the servicer
maps to gRPC status codes; every call, done or refused, leaves an audit event.
"""
from __future__ import annotations

import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Iterator, Sequence

from sqlalchemy import and_, func, select, update

from fedlink.identity import Identity
from fedlink.rules import load_rulepack
from fedlink.schema import (
    HOUSEHOLD_DEPARTMENTS, HOUSEHOLD_TOKEN_BYTES, FieldSpec, LinkageSchema, Project, SchemaError,
)
from fedlink.wire import batch_digest, upload_digest
from server import faults
from server import store as t
from server.audit import AuditLog
from server.schedule import ScheduleError, first_due, from_iso, iso, latest_passed, next_due, parse_cadence
from server.limits import Limits
from server.health import HealthReport, encoding_health
from server.matching import pack_filters
from server.store import Store

MAX_REF_BYTES = 16 + 256


OUTCOMES = ("confirmed", "assistance_granted", "not_in_need", "wrong_person")


def rule_changes(old, new) -> dict:
    """What an operator changed in a rule pack, by name: the audit trail of thresholds."""
    params = {k: [old.parameters.get(k), v] for k, v in new.parameters.items() if old.parameters.get(k) != v}
    lines = {k: [old.subsistence_lines.get(k), new.subsistence_lines.get(k)]
             for k in set(old.subsistence_lines) | set(new.subsistence_lines)
             if old.subsistence_lines.get(k) != new.subsistence_lines.get(k)}
    if old.national_floor != new.national_floor:
        lines["national_floor"] = [old.national_floor, new.national_floor]
    old_rules = {r.name: r for r in old.rules}
    new_rules = {r.name: r for r in new.rules}
    return {
        "parameters": params, "subsistence_lines": lines,
        "rules_added": sorted(set(new_rules) - set(old_rules)),
        "rules_removed": sorted(set(old_rules) - set(new_rules)),
        "rules_changed": sorted(n for n in set(old_rules) & set(new_rules) if old_rules[n] != new_rules[n]),
    }


class DomainError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    code = "NOT_FOUND"


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"


class InvalidArgument(DomainError):
    code = "INVALID_ARGUMENT"


class FailedPrecondition(DomainError):
    code = "FAILED_PRECONDITION"


class AlreadyExists(DomainError):
    code = "ALREADY_EXISTS"


class ResourceExhausted(DomainError):
    """Over one of the coordinator's limits (server/limits.py). With
    `retry_after_ms` (the rate limit) the caller may retry after that long."""
    code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after_ms: int = 0):
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


@dataclass(frozen=True)
class IncomingRecord:
    ref: bytes
    clk: bytes
    indicators: dict[str, int]
    household: bytes = b""  # keyed household token (agents/households.py), household registers only


@dataclass
class RunStatus:
    """Live progress of a run, shared between its worker thread and watchers.
    Every phase change is kept, so a watcher sees each phase however fast it
    went; within a phase a slow watcher gets the latest counts."""

    run_id: str
    events: list[dict] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def publish(self, state: str, phase: str, done: int, total: int, message: str) -> None:
        event = {"run_id": self.run_id, "state": state, "phase": phase, "done": done, "total": total,
                 "message": message}
        with self.cond:
            if self.events and self.events[-1]["phase"] == phase and self.events[-1]["state"] == state:
                self.events[-1] = event
            else:
                self.events.append(event)
            self.cond.notify_all()


def project_to_row(p: Project) -> dict:
    return {
        "departments": {d: list(v) for d, v in p.departments.items()},
        "schema": {"filter_bits": p.schema.filter_bits, "threshold": p.schema.threshold,
                   "auto_threshold": p.schema.auto_threshold, "hardening": p.schema.hardening,
                   "fields": [{"name": f.name, "hashes": f.hashes, "qgram": f.qgram, "kind": f.kind,
                               "column": f.column} for f in p.schema.fields]},
        "reference_date": p.reference_date,
    }


def project_from_row(row) -> Project:
    spec = row.spec
    schema = LinkageSchema(spec["schema"]["filter_bits"], tuple(FieldSpec(**f) for f in spec["schema"]["fields"]),
                           spec["schema"]["threshold"], spec["schema"].get("auto_threshold", False),
                           spec["schema"]["hardening"])
    return Project(row.project_id, {d: tuple(v) for d, v in spec["departments"].items()}, schema,
                   spec["reference_date"], row.rules_toml)


def _schedule_dict(project_id: str, row) -> dict:
    keys = ("every", "day", "at", "next_due", "last_run_id", "last_due", "last_error")
    if row is None:
        return {"project_id": project_id, **{k: 0 if k == "day" else "" for k in keys}}
    return {"project_id": project_id, **{k: getattr(row, k) or (0 if k == "day" else "") for k in keys}}


class Coordinator:
    scheduler = None  # the Scheduler thread, when serving (server/serve.py)

    def __init__(self, store: Store, audit: AuditLog, engine=None, limits: Limits | None = None):
        from server.engine import LocalEngine

        self.store = store
        self.audit_log = audit
        self.engine = engine or LocalEngine()
        self.limits = limits or Limits()
        self._runs: dict[str, RunStatus] = {}
        self._runs_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- access --------------------------------------------------------------

    def refuse(self, who: Identity | str, method: str, error: DomainError) -> DomainError:
        """Record a refused call, then hand the error back to raise."""
        with self.store.write() as conn:
            self.store.audit(conn, str(who), "call.refused", method=method, status=error.code,
                             reason=error.message[:300])
        return error

    def _require(self, who: Identity, method: str, *roles: str) -> None:
        if who.role not in roles:
            raise self.refuse(who, method, PermissionDenied(
                f"{method} needs the {' or '.join(roles)} role; your certificate says {who.role}"))

    def _project(self, conn, project_id: str) -> Project:
        row = conn.execute(select(t.projects).where(t.projects.c.project_id == project_id)).first()
        if row is None:
            raise NotFound(f"project {project_id!r} does not exist")
        return project_from_row(row)

    def _member(self, who: Identity, method: str, project: Project) -> None:
        if who.role == "agent" and who.department not in project.departments:
            raise self.refuse(who, method, PermissionDenied(
                f"department {who.department} does not take part in project {project.project_id}"))

    # -- projects ------------------------------------------------------------

    def create_project(self, who: Identity, project: Project) -> Project:
        self._require(who, "CreateProject", "operator")
        try:
            project.validate()
            load_rulepack(project.rules_toml, source=f"project {project.project_id} rules")
        except (SchemaError, ValueError) as e:
            raise self.refuse(who, "CreateProject", InvalidArgument(str(e))) from None
        try:
            self._insert_project(who, project)
        except DomainError as e:
            raise self.refuse(who, "CreateProject", e) from None
        return project

    def _insert_project(self, who: Identity, project: Project) -> None:
        with self.store.write() as conn:
            exists = conn.execute(select(t.projects.c.project_id).where(
                t.projects.c.project_id == project.project_id)).first()
            if exists:
                raise AlreadyExists(f"project {project.project_id!r} already exists")
            conn.execute(t.projects.insert().values(
                project_id=project.project_id, spec=project_to_row(project), rules_toml=project.rules_toml,
                schema_digest=project.digest(), created_by=str(who), created_at=time.time()))
            self.store.audit(conn, str(who), "project.create", project_id=project.project_id,
                             departments=sorted(project.departments), schema_digest=project.digest())

    def get_project(self, who: Identity, project_id: str) -> Project:
        self._require(who, "GetProject", "operator", "agent", "officer")
        with self.store.read() as conn:
            try:
                project = self._project(conn, project_id)
            except NotFound as e:
                raise self.refuse(who, "GetProject", e) from None
        self._member(who, "GetProject", project)
        with self.store.write() as conn:
            self.store.audit(conn, str(who), "project.read", project_id=project_id, department=who.department or None)
        return project

    # -- uploads -------------------------------------------------------------

    def begin_upload(self, who: Identity, project_id: str, schema_digest: str, key_check: bytes,
                     digest: bytes, record_count: int, batch_count: int) -> tuple[str, list[int], bool]:
        method = "BeginUpload"
        self._require(who, method, "agent")
        try:
            if len(digest) != 32:
                raise InvalidArgument("upload_digest must be a 32-byte SHA-256")
            if record_count < 0 or batch_count < 0 or (record_count == 0) != (batch_count == 0):
                raise InvalidArgument(f"record_count {record_count} and batch_count {batch_count} do not agree")
            if record_count > self.limits.max_records_per_upload:
                raise ResourceExhausted(
                    f"the upload declares {record_count} records; this coordinator takes at most "
                    f"{self.limits.max_records_per_upload} per department upload (--max-records-per-upload)")
            if batch_count > record_count:
                raise InvalidArgument(f"batch_count {batch_count} exceeds record_count {record_count}: "
                                      "every batch holds at least one record")
            with self.store.write() as conn:
                project = self._project(conn, project_id)
                self._member(who, method, project)
                if schema_digest != project.digest():
                    raise FailedPrecondition(
                        f"the extract was encoded with schema {schema_digest[:12]}, the project's is "
                        f"{project.digest()[:12]}: fetch the project again and re-encode")
                self._check_key(conn, who, project_id, key_check)
                row = conn.execute(select(t.uploads).where(and_(
                    t.uploads.c.project_id == project_id, t.uploads.c.department == who.department,
                    t.uploads.c.upload_digest == digest))).first()
                if row is not None:
                    stored = conn.execute(select(t.batches.c.seq).where(
                        t.batches.c.upload_id == row.upload_id).order_by(t.batches.c.seq)).scalars().all()
                    self.store.audit(conn, str(who), "upload.resume", project_id=project_id,
                                     department=who.department, upload_id=row.upload_id, stored_batches=len(stored))
                    return row.upload_id, list(stored), row.state != "open"
                upload_id = uuid.uuid4().hex
                conn.execute(t.uploads.insert().values(
                    upload_id=upload_id, project_id=project_id, department=who.department, upload_digest=digest,
                    schema_digest=schema_digest, record_count=record_count, batch_count=batch_count,
                    state="open", created_at=time.time()))
                self.store.audit(conn, str(who), "upload.begin", project_id=project_id, department=who.department,
                                 upload_id=upload_id, record_count=record_count, batch_count=batch_count,
                                 upload_digest=digest.hex())
                return upload_id, [], False
        except DomainError as e:
            raise self.refuse(who, method, e) from None

    def _check_key(self, conn, who: Identity, project_id: str, key_check: bytes) -> None:
        if len(key_check) != 32:
            raise InvalidArgument("key_check must be a 32-byte HMAC-SHA-256")
        row = conn.execute(select(t.projects.c.key_check, t.projects.c.key_check_by).where(
            t.projects.c.project_id == project_id)).first()
        if row.key_check is None:
            # The first department to upload pins the value; every later one must match it.
            conn.execute(update(t.projects).where(t.projects.c.project_id == project_id).values(
                key_check=key_check, key_check_by=who.department))
            self.store.audit(conn, str(who), "project.key_check_pinned", project_id=project_id,
                             department=who.department)
        elif not hmac.compare_digest(row.key_check, key_check):
            raise PermissionDenied(
                f"the key-check value of {who.department} differs from the one {row.key_check_by} pinned for "
                f"project {project_id}: this department holds a different project secret; ask the project's "
                "departments for the shared secret")

    def store_batch(self, who: Identity, upload_id: str, seq: int, digest: bytes,
                    records: Sequence[IncomingRecord]) -> tuple[int, bool]:
        """Store one batch, exactly once. Returns (records stored, was a duplicate)."""
        method = "UploadBatches"
        self._require(who, method, "agent")
        try:
            if len(records) > self.limits.max_batch_records:
                raise ResourceExhausted(
                    f"batch {seq} holds {len(records)} records; this coordinator takes at most "
                    f"{self.limits.max_batch_records} per batch (--max-batch-records): lower batch_size in the "
                    "agent's config")
            with self.store.write() as conn:
                up = conn.execute(select(t.uploads).where(t.uploads.c.upload_id == upload_id)).first()
                if up is None:
                    raise NotFound(f"upload {upload_id!r} does not exist; call BeginUpload first")
                if up.department != who.department:
                    raise PermissionDenied(f"upload {upload_id} belongs to another department")
                if not 0 <= seq < up.batch_count:  # before any lookup: seq is 32-bit unsigned on the wire
                    raise InvalidArgument(f"batch {seq} is outside 0..{up.batch_count - 1} of upload {upload_id}")
                prior = conn.execute(select(t.batches.c.digest).where(and_(
                    t.batches.c.upload_id == upload_id, t.batches.c.seq == seq))).first()
                if prior is not None:
                    if prior.digest != digest:
                        raise AlreadyExists(f"batch {seq} of upload {upload_id} is stored with other content; "
                                            "an extract cannot change mid-upload: start a new upload")
                    return 0, True
                if up.state != "open":
                    raise FailedPrecondition(f"upload {upload_id} is {up.state}; it takes no more batches")
                project = self._project(conn, up.project_id)
                self._validate_batch(project, who.department, seq, digest, records)
                stored = conn.execute(select(func.coalesce(func.sum(t.batches.c.record_count), 0)).where(
                    t.batches.c.upload_id == upload_id)).scalar()
                if stored + len(records) > up.record_count:
                    raise InvalidArgument(f"batch {seq} takes upload {upload_id} past its declared "
                                          f"{up.record_count} records")
                conn.execute(t.batches.insert().values(upload_id=upload_id, seq=seq, digest=digest,
                                                       record_count=len(records)))
                if records:
                    conn.execute(t.records.insert(), [
                        {"upload_id": upload_id, "seq": seq, "ref": r.ref, "clk": r.clk, "indicators": r.indicators,
                         "household": r.household or None}
                        for r in records])
                self.store.audit(conn, str(who), "upload.batch", project_id=up.project_id,
                                 department=who.department, upload_id=upload_id, seq=seq, records=len(records),
                                 digest=digest.hex())
                return len(records), False
        except DomainError as e:
            raise self.refuse(who, method, e) from None
        except Exception as e:  # a unique-constraint breach: a reference repeated across batches
            if "uq_record_ref" in str(e) or "UNIQUE constraint failed: records" in str(e):
                raise self.refuse(who, method, InvalidArgument(
                    f"batch {seq} repeats a record reference already stored in this upload: "
                    "record_id must be unique in the extract")) from None
            raise

    def _replace_current(self, conn, who: Identity, up, *, reinstated: bool = False) -> dict:
        """Make `up` the department's current upload: the next run uses it and
        not the one before, whose records are then no longer linked or flagged
        (their open flags resolve). Records in both, matched by their stable
        encrypted reference, are the same records: nothing is duplicated."""
        previous = conn.execute(select(t.uploads.c.upload_id).where(and_(
            t.uploads.c.project_id == up.project_id, t.uploads.c.department == up.department,
            t.uploads.c.state == "committed"))).scalar()
        kept = 0
        if previous:
            old = t.records.alias("old")
            kept = conn.execute(select(func.count()).select_from(t.records).join(old, and_(
                old.c.upload_id == previous, old.c.ref == t.records.c.ref)).where(
                t.records.c.upload_id == up.upload_id)).scalar()
            old_count = conn.execute(select(t.uploads.c.record_count).where(
                t.uploads.c.upload_id == previous)).scalar()
            conn.execute(update(t.uploads).where(t.uploads.c.upload_id == previous).values(state="superseded"))
        comparison = {"replaced_upload_id": previous or "", "records_kept": kept,
                      "records_added": up.record_count - kept, "records_removed": (old_count - kept) if previous else 0}
        conn.execute(update(t.uploads).where(t.uploads.c.upload_id == up.upload_id).values(
            state="committed", committed_at=time.time()))
        self.store.audit(conn, str(who), "upload.commit", project_id=up.project_id, department=up.department,
                         upload_id=up.upload_id, records=up.record_count, upload_digest=up.upload_digest.hex(),
                         reinstated=reinstated, **comparison)
        return comparison

    def _validate_batch(self, project: Project, department: str, seq: int, digest: bytes,
                        records: Sequence[IncomingRecord]) -> None:
        width = project.schema.filter_bytes
        declared = set(project.departments[department])
        # Household tokens are refused where the pack evaluates no household or the department numbers none.
        households = (department in HOUSEHOLD_DEPARTMENTS
                      and bool(load_rulepack(project.rules_toml).household_indicators))
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

    def commit_upload(self, who: Identity, upload_id: str) -> dict:
        method = "CommitUpload"
        self._require(who, method, "agent")
        try:
            with self.store.write() as conn:
                up = conn.execute(select(t.uploads).where(t.uploads.c.upload_id == upload_id)).first()
                if up is None:
                    raise NotFound(f"upload {upload_id!r} does not exist")
                if up.department != who.department:
                    raise PermissionDenied(f"upload {upload_id} belongs to another department")
                summary = {"upload_id": upload_id, "department": up.department, "record_count": up.record_count,
                           "committed": True}
                if up.state == "superseded":
                    # The department sends an extract it had sent before (same digest): it is current again.
                    return {**summary, **self._replace_current(conn, who, up, reinstated=True)}
                if up.state != "open":
                    return summary
                got = conn.execute(select(t.batches.c.seq, t.batches.c.digest, t.batches.c.record_count).where(
                    t.batches.c.upload_id == upload_id).order_by(t.batches.c.seq)).all()
                missing = sorted(set(range(up.batch_count)) - {b.seq for b in got})
                if missing:
                    raise FailedPrecondition(f"upload {upload_id} lacks batches {missing[:10]}"
                                             f"{' ...' if len(missing) > 10 else ''}; resume the upload")
                if sum(b.record_count for b in got) != up.record_count:
                    raise FailedPrecondition(f"upload {upload_id} holds {sum(b.record_count for b in got)} records, "
                                             f"declared {up.record_count}")
                if upload_digest(up.schema_digest, [b.digest for b in got]) != up.upload_digest:
                    raise FailedPrecondition(f"upload {upload_id}: the batches do not add up to the declared digest")
                health = self._encoding_health(conn, up)
                # Recorded whether or not the upload is accepted: a refusal leaves its figures too.
                self.store.audit(conn, str(who), "upload.health", project_id=up.project_id,
                                 department=up.department, upload_id=upload_id, accepted=not health.refusals,
                                 **health.figures())
                if not health.refusals:
                    summary.update(self._replace_current(conn, who, up))
            if health.refusals:
                # The batches stay stored and the upload open; the department's previous upload stays current.
                raise FailedPrecondition(
                    f"upload {upload_id} of {up.department} was not committed, its filters look broken: "
                    f"{'; '.join(health.refusals)}. Its batches are kept and the previous upload stays in use; "
                    "fix the extract or the agent's encoding and upload again")
            return {**summary, "health_warnings": health.warnings}
        except DomainError as e:
            raise self.refuse(who, method, e) from None

    def _encoding_health(self, conn, up) -> HealthReport:
        """Encoding health (server/health.py) of an upload's stored filters."""
        project = self._project(conn, up.project_id)
        clks = conn.execute(select(t.records.c.clk).where(t.records.c.upload_id == up.upload_id)).scalars().all()
        return encoding_health(pack_filters(clks, project.schema.filter_bits))

    def _health_of_uploads(self, conn, project_id: str, upload_ids: dict[str, str]) -> list[dict]:
        """The recorded health of each department's upload (its upload.health audit event)."""
        wanted = {u: d for d, u in upload_ids.items()}
        bodies = conn.execute(select(t.audit_events.c.body).where(and_(
            t.audit_events.c.kind == "upload.health", t.audit_events.c.project_id == project_id))).scalars()
        found = {}
        for body in bodies:
            details = json.loads(body)["details"]
            if details["upload_id"] in wanted and details["accepted"]:
                found[details["upload_id"]] = {"department": wanted[details["upload_id"]], **details}
        return [{k: v for k, v in found[u].items() if k not in ("accepted", "refusals")}
                for u in sorted(found, key=lambda u: wanted[u])]

    # -- runs ----------------------------------------------------------------

    def start_run(self, who: Identity, project_id: str, as_of: str = "", *, wait: bool = False) -> str:
        method = "StartRun"
        self._require(who, method, "operator")
        try:
            try:
                day = date.fromisoformat(as_of) if as_of else date.today()
            except ValueError:
                raise InvalidArgument(f"as_of {as_of[:20]!r} is not an ISO date (YYYY-MM-DD)") from None
            with self.store.write() as conn:
                queued = self._queue_run(conn, str(who), project_id, day)
        except DomainError as e:
            raise self.refuse(who, method, e) from None
        return self._launch(*queued, wait=wait)

    def _queue_run(self, conn, actor: str, project_id: str, day: date, **why) -> tuple:
        """Record a queued run on the departments' current uploads, in the caller's transaction."""
        project = self._project(conn, project_id)
        current = conn.execute(select(t.uploads.c.department, t.uploads.c.upload_id).where(and_(
            t.uploads.c.project_id == project_id, t.uploads.c.state == "committed"))).all()
        if not current:
            raise FailedPrecondition(f"project {project_id} has no committed upload yet")
        running = self._running(conn, project_id)
        if running:
            raise FailedPrecondition(f"run {running} of project {project_id} is still going")
        run_id = uuid.uuid4().hex[:16]
        used = {r.department: r.upload_id for r in current}
        conn.execute(t.runs.insert().values(run_id=run_id, project_id=project_id, state="queued",
                                            started_by=actor, created_at=time.time(), as_of=day.isoformat(),
                                            uploads=used))
        self.store.audit(conn, actor, "run.start", project_id=project_id, run_id=run_id,
                         as_of=day.isoformat(), uploads=used, threshold=project.schema.threshold,
                         auto_threshold=project.schema.auto_threshold,
                         engine=self.engine.name, **why)
        return run_id, project, day, used

    @staticmethod
    def _running(conn, project_id: str) -> str | None:
        return conn.execute(select(t.runs.c.run_id).where(and_(
            t.runs.c.project_id == project_id, t.runs.c.state.in_(("queued", "running"))))).scalar()

    def _launch(self, run_id: str, project: Project, day: date, used: dict[str, str], *, wait: bool = False) -> str:
        status = RunStatus(run_id)
        status.publish("queued", "queued", 0, 0, "")
        with self._runs_lock:
            self._runs[run_id] = status
        worker = threading.Thread(target=self._execute_run, args=(run_id, project, day, used, status),
                                  name=f"run-{run_id}", daemon=True)
        self._threads.append(worker)
        worker.start()
        if wait:
            worker.join()
        return run_id

    # -- schedules -------------------------------------------------------------

    def set_schedule(self, who: Identity, project_id: str, every: str, day: int = 0, at: str = "",
                     start: str = "") -> dict:
        """Set (or with an empty `every`, remove) the project's cadence; audited with what it was before."""
        method = "SetSchedule"
        self._require(who, method, "operator")
        try:
            cadence = None
            if every:
                try:
                    cadence = parse_cadence(every, day, at, start)
                except ScheduleError as e:
                    raise InvalidArgument(f"schedule of {project_id}: {e}") from None
            with self.store.write() as conn:
                self._project(conn, project_id)
                old = conn.execute(select(t.schedules).where(t.schedules.c.project_id == project_id)).first()
                conn.execute(t.schedules.delete().where(t.schedules.c.project_id == project_id))
                before = _schedule_dict(project_id, old)
                if cadence is None:
                    self.store.audit(conn, str(who), "schedule.clear", project_id=project_id,
                                     before={k: before[k] for k in ("every", "day", "at", "next_due")})
                    after = _schedule_dict(project_id, None)
                else:
                    conn.execute(t.schedules.insert().values(
                        project_id=project_id, every=cadence.every, day=cadence.day, at=cadence.at,
                        start=cadence.start.isoformat(), next_due=iso(first_due(cadence)),
                        updated_by=str(who), updated_at=time.time()))
                    row = conn.execute(select(t.schedules).where(t.schedules.c.project_id == project_id)).first()
                    after = _schedule_dict(project_id, row)
                    self.store.audit(conn, str(who), "schedule.set", project_id=project_id,
                                     before={k: before[k] for k in ("every", "day", "at", "next_due")},
                                     after={k: after[k] for k in ("every", "day", "at", "next_due")},
                                     start=cadence.start.isoformat())
        except DomainError as e:
            raise self.refuse(who, method, e) from None
        if self.scheduler is not None:
            self.scheduler.wake()  # a schedule that is already due starts now, not at the next poll
        return after

    def get_schedule(self, who: Identity, project_id: str) -> dict:
        method = "GetSchedule"
        self._require(who, method, "operator", "officer")
        try:
            with self.store.write() as conn:
                self._project(conn, project_id)
                row = conn.execute(select(t.schedules).where(t.schedules.c.project_id == project_id)).first()
                self.store.audit(conn, str(who), "schedule.read", project_id=project_id)
        except DomainError as e:
            raise self.refuse(who, method, e) from None
        return _schedule_dict(project_id, row)

    def fire_due(self, now: datetime) -> list[str]:
        """Start the runs that are due at `now` (the scheduler thread calls this).
        Claiming an occurrence and queueing its run are one write transaction,
        so two coordinators on one database never start the same run twice."""
        with self.store.read() as conn:
            due = conn.execute(select(t.schedules.c.project_id).where(
                t.schedules.c.next_due <= iso(now))).scalars().all()
        started = []
        for project_id in due:
            queued = self._fire_one(project_id, now)
            if queued:
                started.append(self._launch(*queued))
        return started

    def _fire_one(self, project_id: str, now: datetime) -> tuple | None:
        actor = "coordinator:scheduler"
        with self.store.write() as conn:
            row = conn.execute(select(t.schedules).where(and_(
                t.schedules.c.project_id == project_id, t.schedules.c.next_due <= iso(now)))).first()
            if row is None or self._running(conn, project_id):
                return None  # taken by another coordinator, or a run is still going: try again next tick
            cadence = parse_cadence(row.every, row.day, row.at, row.start)
            occurrence = latest_passed(cadence, from_iso(row.next_due), now)
            try:
                queued = self._queue_run(conn, actor, project_id, occurrence.date(), scheduled_for=iso(occurrence),
                                         every=row.every)
                error = None
            except DomainError as e:  # e.g. nothing uploaded yet: this occurrence is skipped, and says why
                queued, error = None, e.message
                self.store.audit(conn, actor, "schedule.skipped", project_id=project_id,
                                 scheduled_for=iso(occurrence), reason=error[:300])
            conn.execute(update(t.schedules).where(t.schedules.c.project_id == project_id).values(
                next_due=iso(next_due(cadence, now)), last_due=iso(occurrence), last_error=error,
                last_run_id=queued[0] if queued else row.last_run_id))
            return queued

    def _execute_run(self, run_id: str, project: Project, as_of: date, used: dict[str, str],
                     status: RunStatus) -> None:
        from server.pipeline import execute_run

        phases: set[str] = set()

        def progress(phase: str, done: int, total: int, message: str = "") -> None:
            status.publish("running", phase, done, total, message)
            if phase not in phases:
                phases.add(phase)
                faults.pause(f"run.{phase}")

        try:
            with self.store.write() as conn:
                conn.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(state="running"))
            report = execute_run(self.store, project, run_id, as_of, used, self.engine, progress)
            faults.pause("run.finishing")
            final, error = "done", ""
        except Exception as e:  # the run fails cleanly: recorded, watchers told, nothing half-written
            report, final, error = None, "failed", f"{type(e).__name__}: {e}"
        with self.store.write() as conn:
            conn.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(
                state=final, finished_at=time.time(), report=report, error=error or None))
            self.store.audit(conn, "coordinator", f"run.{final}", project_id=project.project_id, run_id=run_id,
                             persons=(report or {}).get("persons"), error=error or None)
        status.publish(final, final, 0, 0, error or "finished")

    def _run_row(self, conn, run_id: str):
        row = conn.execute(select(t.runs).where(t.runs.c.run_id == run_id)).first()
        if row is None:
            raise NotFound(f"run {run_id!r} does not exist")
        return row

    def watch_run(self, who: Identity, run_id: str, *, poll: float = 1.0) -> Iterator[dict]:
        self._require(who, "WatchRun", "operator")
        with self.store.read() as conn:
            try:
                row = self._run_row(conn, run_id)
            except NotFound as e:
                raise self.refuse(who, "WatchRun", e) from None
        with self.store.write() as conn:
            self.store.audit(conn, str(who), "run.watch", project_id=row.project_id, run_id=run_id)
        status = self._runs.get(run_id)
        if status is None:  # a run from before a restart: its state is all there is
            yield {"run_id": run_id, "state": row.state, "phase": row.state, "done": 0, "total": 0,
                   "message": row.error or ""}
            return
        sent, last = 0, None
        while True:
            with status.cond:
                def stale():  # the last event handed out was updated since
                    return sent > 0 and status.events[sent - 1] != last
                if len(status.events) <= sent and not stale():
                    status.cond.wait(timeout=poll)
                # The final counts of the phase last sent, then every newer phase.
                batch = ([status.events[sent - 1]] if stale() else []) + status.events[sent:]
                sent = len(status.events)
            for event in batch:
                last = event
                yield dict(event)
                if event["state"] in ("done", "failed"):
                    return

    def wait_run(self, run_id: str, timeout: float | None = None) -> str:
        for th in list(self._threads):
            if th.name == f"run-{run_id}":
                th.join(timeout)
        with self.store.read() as conn:
            return self._run_row(conn, run_id).state

    def report(self, who: Identity, run_id: str) -> dict:
        self._require(who, "GetReport", "operator", "officer")
        with self.store.read() as conn:
            try:
                row = self._run_row(conn, run_id)
            except NotFound as e:
                raise self.refuse(who, "GetReport", e) from None
            feedback = conn.execute(select(t.outcomes.c.rule, t.outcomes.c.outcome, func.count()).where(
                t.outcomes.c.project_id == row.project_id).group_by(t.outcomes.c.rule, t.outcomes.c.outcome)).all()
            health = self._health_of_uploads(conn, row.project_id, row.uploads or {})
        with self.store.write() as conn:
            self.store.audit(conn, str(who), "report.read", project_id=row.project_id, run_id=run_id)
        from server.pipeline.report import suppress

        k = (row.report or {}).get("suppression_k", 5)
        outcomes = suppress({f"{rule}/{outcome}": n for rule, outcome, n in feedback}, k)
        return {"run_id": run_id, "state": row.state, **(row.report or {}), "outcomes_per_rule": outcomes,
                "encoding_health": health}

    # -- flags ---------------------------------------------------------------

    def flags_for(self, who: Identity, project_id: str, run_id: str = "", department: str = "") -> list[dict]:
        """The caller's own department's flags of a run (the latest finished one by default)."""
        method = "PullFlags"
        self._require(who, method, "agent")
        try:
            if department and department != who.department:
                raise PermissionDenied(f"your certificate is for {who.department}; you cannot pull the flags "
                                       f"of {department}")
            with self.store.write() as conn:
                project = self._project(conn, project_id)
                self._member(who, method, project)
                q = select(t.runs).where(and_(t.runs.c.project_id == project_id, t.runs.c.state == "done"))
                if run_id:
                    q = q.where(t.runs.c.run_id == run_id)
                run = conn.execute(q.order_by(t.runs.c.created_at.desc()).limit(1)).first()
                if run is None:
                    raise NotFound(f"project {project_id} has no finished run"
                                   + (f" {run_id!r}" if run_id else ""))
                rows = conn.execute(
                    select(t.flags.c.need, t.flags.c.tier, t.flags.c.detail, t.flags.c.status, t.flags.c.since,
                           t.flags.c.transition_until, t.records.c.ref)
                    .join(t.records, t.records.c.id == t.flags.c.record_id)
                    .where(and_(t.flags.c.run_id == run.run_id, t.flags.c.department == who.department))
                    .order_by(t.flags.c.tier, t.flags.c.id)).all()
                self.store.audit(conn, str(who), "flags.deliver", project_id=project_id,
                                 department=who.department, run_id=run.run_id, flags=len(rows))
        except DomainError as e:
            raise self.refuse(who, method, e) from None
        return [{"ref": r.ref, "need": r.need, "tier": r.tier, "run_id": run.run_id, "status": r.status,
                 "since": r.since, "transition_until": r.transition_until or "", **r.detail} for r in rows]

    def record_outcome(self, who: Identity, project_id: str, ref: bytes, need: str, outcome: str,
                       run_id: str) -> str:
        """A caseworker's review of one of the department's flags; returns the
        date until which a "not in need" flag is not raised again ("" otherwise)."""
        method = "RecordOutcome"
        self._require(who, method, "agent")
        try:
            if outcome not in OUTCOMES:
                raise InvalidArgument(f"outcome {outcome[:40]!r} is not one of {', '.join(OUTCOMES)}")
            with self.store.write() as conn:
                project = self._project(conn, project_id)
                self._member(who, method, project)
                flag = conn.execute(
                    select(t.flags.c.id, t.flags.c.detail, t.runs.c.as_of)
                    .join(t.records, t.records.c.id == t.flags.c.record_id)
                    .join(t.runs, t.runs.c.run_id == t.flags.c.run_id)
                    .where(and_(t.flags.c.run_id == run_id, t.flags.c.department == who.department,
                                t.records.c.ref == ref, t.flags.c.need == need))).first()
                if flag is None:
                    raise NotFound(f"run {run_id!r} has no {need!r} flag on that record of {who.department}")
                until = ""
                if outcome == "not_in_need":
                    days = load_rulepack(project.rules_toml).param("not_in_need_suppression_days")
                    until = (date.fromisoformat(flag.as_of) + timedelta(days=int(days))).isoformat()
                rule = flag.detail["reasons"][0]["rule"] if flag.detail.get("reasons") else need
                conn.execute(t.outcomes.insert().values(
                    project_id=project_id, department=who.department, ref=ref, need=need, rule=rule, run_id=run_id,
                    outcome=outcome, suppressed_until=until or None, recorded_by=str(who), recorded_at=time.time()))
                self.store.audit(conn, str(who), "review.outcome", project_id=project_id, department=who.department,
                                 run_id=run_id, flag=flag.id, need=need, rule=rule, outcome=outcome,
                                 suppressed_until=until or None)
                return until
        except DomainError as e:
            raise self.refuse(who, method, e) from None

    def update_rules(self, who: Identity, project_id: str, rules_toml: str) -> Project:
        """Replace the project's rule pack; what changed goes into the audit event."""
        method = "UpdateRules"
        self._require(who, method, "operator")
        try:
            try:
                new = load_rulepack(rules_toml, source=f"project {project_id} rules")
            except ValueError as e:
                raise InvalidArgument(str(e)) from None
            with self.store.write() as conn:
                project = self._project(conn, project_id)
                old = load_rulepack(project.rules_toml)
                conn.execute(update(t.projects).where(t.projects.c.project_id == project_id).values(
                    rules_toml=rules_toml))
                self.store.audit(conn, str(who), "rules.update", project_id=project_id, **rule_changes(old, new))
            return replace(project, rules_toml=rules_toml)
        except DomainError as e:
            raise self.refuse(who, method, e) from None

    # -- audit log -----------------------------------------------------------

    def tree_head(self, who: Identity):
        return self.audit_log.tree_head()

    def consistency_proof(self, who: Identity, old_size: int, new_size: int) -> list[bytes]:
        try:
            return self.audit_log.consistency(old_size, new_size)
        except ValueError as e:
            raise self.refuse(who, "GetConsistencyProof", InvalidArgument(str(e))) from None

    def inclusion_proof(self, who: Identity, index: int, size: int) -> list[bytes]:
        self._require(who, "GetInclusionProof", "officer")
        try:
            proof = self.audit_log.inclusion(index, size)
        except ValueError as e:
            raise self.refuse(who, "GetInclusionProof", InvalidArgument(str(e))) from None
        with self.store.write() as conn:
            self.store.audit(conn, str(who), "audit.read", method="GetInclusionProof", index=index, tree_size=size)
        return proof

    def audit_events(self, who: Identity, start: int = 0, end: int = 0, **filters) -> Iterator[tuple[int, str]]:
        """Events up to the current head; the read itself is logged after them."""
        self._require(who, "ListAuditEvents", "officer")
        head = self.audit_log.tree_head()
        end = min(end or head.tree_size, head.tree_size)
        with self.store.write() as conn:
            self.store.audit(conn, str(who), "audit.read", method="ListAuditEvents", start=start, end=end,
                             filters={k: v for k, v in filters.items() if v})
        return self.audit_log.events(start, end, **filters)

    def recover_interrupted_runs(self) -> list[str]:
        """At start: a run that a previous coordinator process left queued or
        running was cut off by a crash or kill. Its links and flags are written
        in one transaction at its end, so none of them were committed; it is
        marked failed (an audit event says so), its links and flags, if the
        process died after storing them but before marking the run done, are
        removed, and the operator starts it again. One coordinator process
        serves a database at a time."""
        message = "interrupted: the coordinator stopped during the run; start the run again"
        with self.store.write() as conn:
            stale = conn.execute(select(t.runs.c.run_id, t.runs.c.project_id, t.runs.c.state).where(
                t.runs.c.state.in_(("queued", "running")))).all()
            for r in stale:
                conn.execute(t.flags.delete().where(t.flags.c.run_id == r.run_id))
                conn.execute(t.links.delete().where(t.links.c.run_id == r.run_id))
                conn.execute(update(t.runs).where(t.runs.c.run_id == r.run_id).values(
                    state="failed", finished_at=time.time(), error=message))
                self.store.audit(conn, "coordinator", "run.failed", project_id=r.project_id, run_id=r.run_id,
                                 persons=None, error=message, was=r.state)
        return [r.run_id for r in stale]

    def close(self, timeout: float = 30.0) -> None:
        if self.scheduler is not None:
            self.scheduler.stop(timeout)
        for th in self._threads:
            th.join(timeout)
