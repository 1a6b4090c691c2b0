"""The gRPC servicer: translates the wire to domain calls and domain errors to
status codes. The caller's identity comes from the verified client
certificate; no logic lives here."""
from __future__ import annotations

import functools
import inspect
import logging
from contextlib import contextmanager

import grpc
from google.protobuf.message import Message
from prometheus_client import Counter

from fedlink.identity import Identity, IdentityError, identity_from_grpc_context
from fedlink.v1 import coordinator_pb2 as pb
from fedlink.v1 import coordinator_pb2_grpc as pb_grpc
from fedlink.wire import project_from_pb, project_to_pb
from server import faults
from server.domain.access import DomainError, InvalidArgument, ResourceExhausted
from server.domain.audit_reads import LogUnavailable
from server.domain.coordinator import Coordinator
from server.domain.uploads import IncomingRecord
from server.limits import Limits, RateLimiter

log = logging.getLogger("fedlink.coordinator")

CALLS = Counter("fedlink_rpc_calls_total", "RPCs handled", ["method", "code"])
RECORDS = Counter("fedlink_records_stored_total", "Encoded records stored", ["department"])

# Only for --insecure on loopback: with no certificate, the caller names itself.
DEV_IDENTITY_HEADER = "fedlink-dev-identity"
# Trailing metadata of a rate-limited call: milliseconds to wait before retrying.
RETRY_AFTER_KEY = "retry-after-ms"


def _identity(context, insecure: bool) -> Identity:
    if insecure:
        claimed = dict(context.invocation_metadata()).get(DEV_IDENTITY_HEADER, "")
        role, _, rest = claimed.partition(":")
        if role == "agent":
            return Identity("agent", f"agent-{rest}", rest)
        if role in ("operator", "officer"):
            return Identity(role, rest or role, "")
        raise IdentityError(f"insecure mode: send metadata {DEV_IDENTITY_HEADER}=role:name")
    return identity_from_grpc_context(context)


def _nul_field(message, prefix: str = "") -> str | None:
    """The first string field (by path) holding a NUL character: refused up
    front, as no database column can store one."""
    for fd, value in message.ListFields():
        path = f"{prefix}{fd.name}"
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            items = value.items()
            if any(isinstance(k, str) and "\x00" in k or isinstance(v, str) and "\x00" in v for k, v in items):
                return path
            continue
        values = value if fd.is_repeated else [value]
        for v in values:
            if isinstance(v, str) and "\x00" in v:
                return path
            if isinstance(v, Message):
                inner = _nul_field(v, f"{path}.")
                if inner:
                    return inner
    return None


class Undecodable:
    """A request that did not parse as its message (not protobuf, invalid
    UTF-8 in a string field, ...). gRPC itself would answer INTERNAL; the
    methods refuse it with INVALID_ARGUMENT instead (see `lenient`)."""

    def __init__(self, error: str):
        self.error = error


def lenient(deserialize):
    """A request deserializer that never raises: a bad message becomes Undecodable."""
    def parse(data: bytes):
        try:
            return deserialize(data)
        except Exception as e:  # DecodeError, UnicodeDecodeError, ...
            return Undecodable(f"{type(e).__name__}: {str(e)[:200]}")
    return parse


def register(servicer, server) -> None:
    """add_CoordinatorServicer_to_server, with lenient request deserializers."""
    class Registration:
        def add_generic_rpc_handlers(self, handlers):
            self.generic = handlers

        def add_registered_method_handlers(self, service, handlers):
            self.service, self.handlers = service, handlers

    reg = Registration()
    pb_grpc.add_CoordinatorServicer_to_server(servicer, reg)
    if not hasattr(reg, "handlers"):  # generated code of another shape: register as generated
        server.add_generic_rpc_handlers(reg.generic)
        return
    handlers = {name: h._replace(request_deserializer=lenient(h.request_deserializer))
                for name, h in reg.handlers.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(reg.service, handlers),))
    server.add_registered_method_handlers(reg.service, handlers)


@contextmanager
def _status_codes(name: str, context):
    """Domain errors and the rest to status codes: the one mapping, for unary and streaming calls alike."""
    try:
        yield
        CALLS.labels(name, "OK").inc()
    except IdentityError as e:
        CALLS.labels(name, "UNAUTHENTICATED").inc()
        context.abort(grpc.StatusCode.UNAUTHENTICATED, str(e))
    except DomainError as e:
        CALLS.labels(name, e.code).inc()
        if getattr(e, "retry_after_ms", 0):
            context.set_trailing_metadata(((RETRY_AFTER_KEY, str(e.retry_after_ms)),))
        context.abort(grpc.StatusCode[e.code], e.message)
    except Exception:
        # The traceback goes to the operator's log; the caller gets no internals.
        log.exception("%s failed", name)
        CALLS.labels(name, "INTERNAL").inc()
        context.abort(grpc.StatusCode.INTERNAL, f"{name} failed inside the coordinator; the operator's log has details")


def rpc(method):
    """Identify the caller, apply the rate limit, check the request, run the
    method, map errors to status codes."""
    name = method.__name__

    @functools.wraps(method)
    def unary(self, request, context):
        with _status_codes(name, context):
            return method(self, request, context, self._admit(context, name, request))

    @functools.wraps(method)
    def streaming(self, request, context):
        with _status_codes(name, context):
            yield from method(self, request, context, self._admit(context, name, request))

    return streaming if inspect.isgeneratorfunction(method) else unary


class CoordinatorServicer(pb_grpc.CoordinatorServicer):
    def __init__(self, coordinator: Coordinator, *, insecure: bool = False, limits: Limits | None = None):
        self.coordinator = coordinator
        self.insecure = insecure
        self.limits = limits or coordinator.context.limits
        self.limiter = RateLimiter(self.limits.calls_per_minute)

    def _admit(self, context, name: str, request) -> Identity:
        """The caller, within the per-identity rate limit, with no NUL in any string field."""
        who = _identity(context, self.insecure)
        alarm = self.coordinator.context.audit_log.alarm
        if alarm:  # a tampered log: nothing more is served (server/audit.py)
            raise LogUnavailable(f"the coordinator's audit log was tampered with and it serves nothing: {alarm}. "
                                 "The operator must restore the database from a backup")
        wait_ms = self.limiter.admit(str(who))
        if wait_ms:
            error = ResourceExhausted(
                f"{who} made more than {self.limits.calls_per_minute} calls in a minute (the coordinator's "
                f"--max-calls-per-minute); retry in {wait_ms / 1000:.1f} s", retry_after_ms=wait_ms)
            if self.limiter.refused_in_a_row(str(who)) == 1:  # one audit event per burst, not one per call
                self.coordinator.context.refuse(who, name, error)
            raise error
        refusal = _malformed(name, request)
        if refusal:
            self.coordinator.context.refuse(who, name, refusal)
            raise refusal
        return who

    @rpc
    def CreateProject(self, request, context, who):
        return project_to_pb(self.coordinator.projects.create(who, project_from_pb(request.project)))

    @rpc
    def GetProject(self, request, context, who):
        return project_to_pb(self.coordinator.projects.get(who, request.project_id))

    @rpc
    def BeginUpload(self, request, context, who):
        s = self.coordinator.uploads.begin(who, request.project_id, request.schema_digest, request.key_check,
                                           request.upload_digest, request.record_count, request.batch_count)
        return pb.UploadSession(upload_id=s.upload_id, stored_batches=s.stored_batches, committed=s.committed)

    @rpc
    def UploadBatches(self, request_iterator, context, who):
        for batch in request_iterator:
            refusal = _malformed("UploadBatches", batch, f"batch {getattr(batch, 'seq', '?')}: ")
            if refusal:
                self.coordinator.context.refuse(who, "UploadBatches", refusal)
                raise refusal
            records = [IncomingRecord(r.ref, r.clk, dict(r.indicators), r.household) for r in batch.records]
            stored = self.coordinator.uploads.store_batch(who, batch.upload_id, batch.seq, batch.digest, records)
            RECORDS.labels(who.department).inc(stored.records)
            yield pb.BatchAck(seq=batch.seq, stored=stored.records, duplicate=stored.duplicate)

    @rpc
    def CommitUpload(self, request, context, who):
        s = self.coordinator.uploads.commit(who, request.upload_id)
        return pb.UploadSummary(
            upload_id=s.upload_id, department=s.department, record_count=s.record_count, committed=s.committed,
            replaced_upload_id=s.replaced_upload_id, records_kept=s.records_kept, records_added=s.records_added,
            records_removed=s.records_removed, health_warnings=s.health_warnings)

    @rpc
    def StartRun(self, request, context, who):
        run_id = self.coordinator.runs.start(who, request.project_id, request.as_of)
        return pb.Run(run_id=run_id, project_id=request.project_id, state="queued")

    @rpc
    def WatchRun(self, request, context, who):
        for e in self.coordinator.runs.watch(who, request.run_id):
            if not context.is_active():
                return
            yield pb.RunProgress(run_id=e.run_id, phase=e.phase, done=e.done, total=e.total, state=e.state,
                                 message=e.message)

    @rpc
    def GetReport(self, request, context, who):
        r = self.coordinator.runs.report(who, request.run_id)
        return pb.Report(
            run_id=r.run_id, state=r.state, persons=r.persons, suppression_k=r.suppression_k,
            records_per_department=_cells(r.records_per_department),
            linked_pairs_per_department_pair=_cells(r.linked_pairs_per_department_pair),
            persons_by_department_count=_cells(r.persons_by_department_count),
            flags_per_need=_cells(r.flags_per_need), flags_per_status=_cells(r.flags_per_status),
            outcomes_per_rule=_cells(r.outcomes_per_rule),
            encoding_health=[_encoding_health(h) for h in r.encoding_health])

    @rpc
    def PullFlags(self, request, context, who):
        flags = self.coordinator.reviews.flags(who, request.project_id, request.run_id, request.department)
        for i, f in enumerate(flags):
            if i == 1:
                faults.pause("flags.delivering")  # the fault tests' kill point; off unless asked for
            yield pb.Flag(
                ref=f.ref, need=f.need, tier=f.tier, run_id=f.run_id,
                reasons=[pb.Reason(rule=r.rule, indicators=r.indicators) for r in f.reasons],
                departments_linked=f.departments_linked, match_scores=f.match_scores,
                explanation=f.explanation, status=f.status, since=f.since, transition_until=f.transition_until)

    @rpc
    def RecordOutcome(self, request, context, who):
        until = self.coordinator.reviews.record_outcome(who, request.project_id, request.ref, request.need,
                                                        request.outcome, request.run_id)
        return pb.RecordOutcomeResponse(suppressed_until=until)

    @rpc
    def UpdateRules(self, request, context, who):
        return project_to_pb(self.coordinator.reviews.update_rules(who, request.project_id, request.rules_toml))

    @rpc
    def SetSchedule(self, request, context, who):
        return _schedule(self.coordinator.schedules.set(who, request.project_id, request.every, request.day,
                                                        request.at, request.start))

    @rpc
    def GetSchedule(self, request, context, who):
        return _schedule(self.coordinator.schedules.get(who, request.project_id))

    @rpc
    def GetCheckpoint(self, request, context, who):
        served = self.coordinator.audit.checkpoint(who)
        return pb.CheckpointReply(checkpoint=str(served.checkpoint), witnessed=[str(n) for n in served.witnessed],
                                  log_key=self.coordinator.audit.log_key)

    @rpc
    def AddCosignature(self, request, context, who):
        return pb.AddCosignatureReply(witnesses=self.coordinator.audit.add_cosignature(who, request.cosigned))

    @rpc
    def GetConsistencyProof(self, request, context, who):
        return pb.Proof(hashes=self.coordinator.audit.consistency_proof(who, request.old_size, request.new_size))

    @rpc
    def GetInclusionProof(self, request, context, who):
        return pb.Proof(hashes=self.coordinator.audit.inclusion_proof(who, request.index, request.tree_size))

    @rpc
    def ListAuditEvents(self, request, context, who):
        for seq, body in self.coordinator.audit.events(
                who, request.start, request.end, actor=request.actor, kind=request.kind,
                department=request.department, since=request.since, until=request.until):
            yield pb.AuditEvent(seq=seq, body=body)


def _malformed(name: str, request, where: str = "") -> InvalidArgument | None:
    """Why a request (or one message of a stream) is refused before the domain sees it."""
    if isinstance(request, Undecodable):
        return InvalidArgument(f"the {name} request is not a valid fedlink.v1 message ({request.error})")
    field = _nul_field(request) if isinstance(request, Message) else None
    if field and where:
        return InvalidArgument(f"{where}field {field} contains a NUL character")
    if field:
        return InvalidArgument(f"field {field} contains a NUL character, which no identifier or name may hold")
    return None


def _cells(cells) -> list:
    return [pb.CountCell(key=c.key, count=c.count, suppressed=c.suppressed) for c in cells]


def _encoding_health(h) -> pb.EncodingHealth:
    return pb.EncodingHealth(
        department=h.department, upload_id=h.upload_id, fill_rate=h.fill_rate, fill_min=h.fill_min,
        fill_max=h.fill_max, empty_filters=h.empty_filters, max_duplicates=h.max_duplicates,
        duplicate_limit=h.duplicate_limit, position_min=h.position_min, position_max=h.position_max,
        chi2_per_dof=h.chi2_per_dof, constant_positions=h.constant_positions, dead_positions=h.dead_positions,
        warnings=h.warnings)


def _schedule(s) -> pb.Schedule:
    return pb.Schedule(project_id=s.project_id, every=s.every, day=s.day, at=s.at, next_due=s.next_due,
                       last_run_id=s.last_run_id, last_due=s.last_due, last_error=s.last_error)
