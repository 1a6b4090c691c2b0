"""The gRPC servicer: translates the wire to domain calls and domain errors to
status codes. The caller's identity comes from the verified client
certificate; no logic lives here."""
from __future__ import annotations

import functools
import inspect
import logging

import grpc
from prometheus_client import Counter

from fedlink.identity import Identity, IdentityError, identity_from_grpc_context
from fedlink.v1 import coordinator_pb2 as pb
from fedlink.v1 import coordinator_pb2_grpc as pb_grpc
from fedlink.wire import project_from_pb, project_to_pb
from server.service import Coordinator, DomainError, IncomingRecord

log = logging.getLogger("fedlink.coordinator")

CALLS = Counter("fedlink_rpc_calls_total", "RPCs handled", ["method", "code"])
RECORDS = Counter("fedlink_records_stored_total", "Encoded records stored", ["department"])

# Only for --insecure on loopback: with no certificate, the caller names itself.
DEV_IDENTITY_HEADER = "fedlink-dev-identity"


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


def rpc(method):
    """Identify the caller, run the method, map domain errors to status codes."""
    name = method.__name__

    @functools.wraps(method)
    def unary(self, request, context):
        try:
            who = _identity(context, self.insecure)
            result = method(self, request, context, who)
            CALLS.labels(name, "OK").inc()
            return result
        except IdentityError as e:
            CALLS.labels(name, "UNAUTHENTICATED").inc()
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(e))
        except DomainError as e:
            CALLS.labels(name, e.code).inc()
            context.abort(grpc.StatusCode[e.code], e.message)
        except Exception:
            _internal(name, context)

    @functools.wraps(method)
    def streaming(self, request, context):
        try:
            who = _identity(context, self.insecure)
            yield from method(self, request, context, who)
            CALLS.labels(name, "OK").inc()
        except IdentityError as e:
            CALLS.labels(name, "UNAUTHENTICATED").inc()
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(e))
        except DomainError as e:
            CALLS.labels(name, e.code).inc()
            context.abort(grpc.StatusCode[e.code], e.message)
        except Exception:
            _internal(name, context)

    return streaming if inspect.isgeneratorfunction(method) else unary


class CoordinatorServicer(pb_grpc.CoordinatorServicer):
    def __init__(self, coordinator: Coordinator, *, insecure: bool = False):
        self.coordinator = coordinator
        self.insecure = insecure

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
            records = [IncomingRecord(r.ref, r.clk, dict(r.indicators)) for r in batch.records]
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
            outcomes_per_rule=cells("outcomes_per_rule"))

    @rpc
    def PullFlags(self, request, context, who):
        for f in self.coordinator.flags_for(who, request.project_id, request.run_id, request.department):
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
