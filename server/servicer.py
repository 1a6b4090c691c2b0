"""The gRPC servicer: translates the wire to domain calls and domain errors to
status codes. The caller's identity comes from the verified client
certificate; no logic lives here."""
from __future__ import annotations

import functools
import inspect
import logging

import grpc
from google.protobuf.message import Message
from prometheus_client import Counter

from fedlink.identity import Identity, IdentityError, identity_from_grpc_context
from fedlink.v1 import coordinator_pb2 as pb
from fedlink.v1 import coordinator_pb2_grpc as pb_grpc
from fedlink.wire import project_from_pb, project_to_pb
from server import faults
from server.limits import Limits, RateLimiter
from server.service import Coordinator, DomainError, IncomingRecord, InvalidArgument, ResourceExhausted

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


def _internal(name: str, context) -> None:
    # The traceback goes to the operator's log; the caller gets no internals.
    log.exception("%s failed", name)
    CALLS.labels(name, "INTERNAL").inc()
    context.abort(grpc.StatusCode.INTERNAL, f"{name} failed inside the coordinator; the operator's log has details")


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


def _undecodable(coordinator, who, name: str, request: Undecodable) -> DomainError:
    return coordinator.refuse(who, name, InvalidArgument(
        f"the {name} request is not a valid fedlink.v1 message ({request.error})"))


def _abort_domain(context, name: str, e: DomainError) -> None:
    CALLS.labels(name, e.code).inc()
    if getattr(e, "retry_after_ms", 0):
        context.set_trailing_metadata(((RETRY_AFTER_KEY, str(e.retry_after_ms)),))
    context.abort(grpc.StatusCode[e.code], e.message)


def rpc(method):
    """Identify the caller, apply the rate limit, check the request, run the
    method, map domain errors to status codes."""
    name = method.__name__

    @functools.wraps(method)
    def unary(self, request, context):
        try:
            who = _identity(context, self.insecure)
            self._admit(who, name, request)
            result = method(self, request, context, who)
            CALLS.labels(name, "OK").inc()
            return result
        except IdentityError as e:
            CALLS.labels(name, "UNAUTHENTICATED").inc()
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(e))
        except DomainError as e:
            _abort_domain(context, name, e)
        except Exception:
            _internal(name, context)

    @functools.wraps(method)
    def streaming(self, request, context):
        try:
            who = _identity(context, self.insecure)
            self._admit(who, name, request)
            yield from method(self, request, context, who)
            CALLS.labels(name, "OK").inc()
        except IdentityError as e:
            CALLS.labels(name, "UNAUTHENTICATED").inc()
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(e))
        except DomainError as e:
            _abort_domain(context, name, e)
        except Exception:
            _internal(name, context)

    return streaming if inspect.isgeneratorfunction(method) else unary


class CoordinatorServicer(pb_grpc.CoordinatorServicer):
    def __init__(self, coordinator: Coordinator, *, insecure: bool = False, limits: Limits | None = None):
        self.coordinator = coordinator
        self.insecure = insecure
        self.limits = limits or coordinator.limits
        self.limiter = RateLimiter(self.limits.calls_per_minute)

    def _admit(self, who: Identity, name: str, request) -> None:
        """The per-identity rate limit, then no NUL in any string field."""
        wait_ms = self.limiter.admit(str(who))
        if wait_ms:
            error = ResourceExhausted(
                f"{who} made more than {self.limits.calls_per_minute} calls in a minute (the coordinator's "
                f"--max-calls-per-minute); retry in {wait_ms / 1000:.1f} s", retry_after_ms=wait_ms)
            if self.limiter.refused_in_a_row(str(who)) == 1:  # one audit event per burst, not one per call
                self.coordinator.refuse(who, name, error)
            raise error
        if isinstance(request, Undecodable):
            raise _undecodable(self.coordinator, who, name, request)
        if isinstance(request, Message):
            field = _nul_field(request)
            if field:
                raise self.coordinator.refuse(who, name, InvalidArgument(
                    f"field {field} contains a NUL character, which no identifier or name may hold"))

    @rpc
    def CreateProject(self, request, context, who):
        return project_to_pb(self.coordinator.create_project(who, project_from_pb(request.project)))

    @rpc
    def GetProject(self, request, context, who):
        return project_to_pb(self.coordinator.get_project(who, request.project_id))

    @rpc
    def BeginUpload(self, request, context, who):
        upload_id, stored, committed = self.coordinator.begin_upload(
            who, request.project_id, request.schema_digest, request.key_check, request.upload_digest,
            request.record_count, request.batch_count)
        return pb.UploadSession(upload_id=upload_id, stored_batches=stored, committed=committed)

    @rpc
    def UploadBatches(self, request_iterator, context, who):
        for batch in request_iterator:
            if isinstance(batch, Undecodable):
                raise _undecodable(self.coordinator, who, "UploadBatches", batch)
            field = _nul_field(batch)
            if field:
                raise self.coordinator.refuse(who, "UploadBatches", InvalidArgument(
                    f"batch {batch.seq}: field {field} contains a NUL character"))
            records = [IncomingRecord(r.ref, r.clk, dict(r.indicators), r.household) for r in batch.records]
            stored, duplicate = self.coordinator.store_batch(who, batch.upload_id, batch.seq, batch.digest, records)
            RECORDS.labels(who.department).inc(stored)
            yield pb.BatchAck(seq=batch.seq, stored=stored, duplicate=duplicate)

    @rpc
    def CommitUpload(self, request, context, who):
        return pb.UploadSummary(**self.coordinator.commit_upload(who, request.upload_id))

    @rpc
    def StartRun(self, request, context, who):
        run_id = self.coordinator.start_run(who, request.project_id, request.as_of)
        return pb.Run(run_id=run_id, project_id=request.project_id, state="queued")

    @rpc
    def WatchRun(self, request, context, who):
        for p in self.coordinator.watch_run(who, request.run_id):
            if not context.is_active():
                return
            yield pb.RunProgress(**p)

    @rpc
    def GetReport(self, request, context, who):
        r = self.coordinator.report(who, request.run_id)
        cells = lambda key: [pb.CountCell(**c) for c in r.get(key, [])]  # noqa: E731
        return pb.Report(
            run_id=r["run_id"], state=r["state"], persons=r.get("persons", 0),
            suppression_k=r.get("suppression_k", 0),
            records_per_department=cells("records_per_department"),
            linked_pairs_per_department_pair=cells("linked_pairs_per_department_pair"),
            persons_by_department_count=cells("persons_by_department_count"),
            flags_per_need=cells("flags_per_need"), flags_per_status=cells("flags_per_status"),
            outcomes_per_rule=cells("outcomes_per_rule"),
            encoding_health=[pb.EncodingHealth(**h) for h in r.get("encoding_health", [])])

    @rpc
    def PullFlags(self, request, context, who):
        for i, f in enumerate(self.coordinator.flags_for(who, request.project_id, request.run_id,
                                                         request.department)):
            if i == 1:
                faults.pause("flags.delivering")  # the fault tests' kill point; off unless asked for
            yield pb.Flag(
                ref=f["ref"], need=f["need"], tier=f["tier"], run_id=f["run_id"],
                reasons=[pb.Reason(rule=r["rule"], indicators=r["indicators"]) for r in f["reasons"]],
                departments_linked=f["departments_linked"], match_scores=f["match_scores"],
                explanation=f["explanation"], status=f["status"], since=f["since"],
                transition_until=f["transition_until"])

    @rpc
    def RecordOutcome(self, request, context, who):
        until = self.coordinator.record_outcome(who, request.project_id, request.ref, request.need, request.outcome,
                                                request.run_id)
        return pb.RecordOutcomeResponse(suppressed_until=until)

    @rpc
    def UpdateRules(self, request, context, who):
        return project_to_pb(self.coordinator.update_rules(who, request.project_id, request.rules_toml))

    @rpc
    def SetSchedule(self, request, context, who):
        return pb.Schedule(**self.coordinator.set_schedule(who, request.project_id, request.every, request.day,
                                                           request.at, request.start))

    @rpc
    def GetSchedule(self, request, context, who):
        return pb.Schedule(**self.coordinator.get_schedule(who, request.project_id))

    @rpc
    def GetTreeHead(self, request, context, who):
        h = self.coordinator.tree_head(who)
        return pb.SignedTreeHead(tree_size=h.tree_size, root_hash=h.root_hash, timestamp_ms=h.timestamp_ms,
                                 signature=h.signature, key_id=h.key_id,
                                 public_key_pem=self.coordinator.audit_log.public_pem)

    @rpc
    def GetConsistencyProof(self, request, context, who):
        return pb.Proof(hashes=self.coordinator.consistency_proof(who, request.old_size, request.new_size))

    @rpc
    def GetInclusionProof(self, request, context, who):
        return pb.Proof(hashes=self.coordinator.inclusion_proof(who, request.index, request.tree_size))

    @rpc
    def ListAuditEvents(self, request, context, who):
        for seq, body in self.coordinator.audit_events(
                who, request.start, request.end, actor=request.actor, kind=request.kind,
                department=request.department, since=request.since, until=request.until):
            yield pb.AuditEvent(seq=seq, body=body)
