"""The gRPC servicer: translates the wire to domain calls and domain errors to
status codes. The caller's identity comes from the verified client
certificate (server/admission.py); every refusal, of whatever kind, is
audited (in bursts, server/bursts.py); no logic lives here."""
from __future__ import annotations

import functools
import inspect
import logging
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import grpc
from google.protobuf.message import Message

from fedlink.identity import Identity, IdentityError
from fedlink.pki import RevocationList
from fedlink.v1 import coordinator_pb2 as pb
from fedlink.v1 import coordinator_pb2_grpc as pb_grpc
from fedlink.wire import project_from_pb, project_to_pb
from server import faults
from server.admission import StreamWatch, certificate_identity, dev_identity
from server.domain.access import DomainError, InvalidArgument, ResourceExhausted
from server.domain.audit_reads import LogUnavailable
from server.domain.coordinator import Coordinator
from server.domain.uploads import ExtractQuality, FieldQuality, IncomingRecord
from server.limits import Limits, RateLimiter, StreamSlots
from server.metrics import RECORDS_STORED, RPC_SECONDS
from server.outages import outage_kind, store_problem

log = logging.getLogger("fedlink.coordinator")

# Trailing metadata of a rate-limited call: milliseconds to wait before retrying.
RETRY_AFTER_KEY = "retry-after-ms"


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
    UTF-8 in a string field, ...), or one over the coordinator's message size
    limit. gRPC itself would answer INTERNAL, or refuse the size before the
    coordinator could audit it; the methods refuse it instead (see `lenient`)."""

    def __init__(self, error: str, size: int = 0):
        self.error, self.size = error, size


def lenient(deserialize, max_bytes: int):
    """A request deserializer that never raises: a bad or oversized message becomes Undecodable."""
    def parse(data: bytes):
        if len(data) > max_bytes:
            return Undecodable("", size=len(data))
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
    size = servicer.limits.max_message_bytes
    handlers = {name: h._replace(request_deserializer=lenient(h.request_deserializer, size))
                for name, h in reg.handlers.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(reg.service, handlers),))
    server.add_registered_method_handlers(reg.service, handlers)


@contextmanager
def _status_codes(name: str, context, store: str = ""):
    """Domain errors and the rest to status codes: the one mapping, for unary and
    streaming calls alike; each call's time goes to the latency histogram by its code.
    A store that is down or full is the caller's to retry or the operator's to fix, named."""
    began, code = time.perf_counter(), "OK"
    try:
        yield
    except grpc.RpcError:
        # The client's stream broke (it went away, or the coordinator closed it as idle): no status to send.
        code = "CANCELLED"
    except IdentityError as e:
        code = "UNAUTHENTICATED"
        log.warning("%s refused: UNAUTHENTICATED: %s", name, e,
                    extra={"event": "call.refused", "method": name, "status": code})
        context.abort(grpc.StatusCode.UNAUTHENTICATED, str(e))
    except DomainError as e:
        code = e.code
        if getattr(e, "retry_after_ms", 0):
            context.set_trailing_metadata(((RETRY_AFTER_KEY, str(e.retry_after_ms)),))
        context.abort(grpc.StatusCode[e.code], e.message)
    except GeneratorExit:  # the caller left a stream
        code = "CANCELLED"
        raise
    except Exception as e:
        outage = outage_kind(e)
        if outage:  # the store is down or full: the caller may retry, or the operator must act
            code = outage
            log.warning("%s: %s", name, store_problem(e, store))
            context.abort(grpc.StatusCode[outage], f"{name}: {store_problem(e, store)}")
        # The traceback goes to the operator's log; the caller gets no internals.
        code = "INTERNAL"
        log.exception("%s failed", name, extra={"event": "call.failed", "method": name})
        context.abort(grpc.StatusCode.INTERNAL, f"{name} failed inside the coordinator; the operator's log has details")
    finally:
        RPC_SECONDS.labels(name, code).observe(time.perf_counter() - began)


def rpc(method):
    """Identify the caller, apply the rate limit, check the request, run the
    method, map errors to status codes. A streaming call also takes one of
    the caller's stream slots and is watched for idling on its client."""
    name = method.__name__

    @functools.wraps(method)
    def unary(self, request, context):
        with _status_codes(name, context, self.coordinator.store.name):
            return method(self, request, context, self._admit(context, name, request))

    @functools.wraps(method)
    def streaming(self, request, context):
        with _status_codes(name, context, self.coordinator.store.name):
            who = self._admit(context, name, request)
            with self._stream(who, name, context) as watched:
                if not isinstance(request, (Message, Undecodable)):  # a client stream: its messages are counted
                    request = self._messages(who, name, request, watched)
                for reply in method(self, request, context, who):
                    with StreamWatch.waiting(watched):
                        yield reply

    return streaming if inspect.isgeneratorfunction(method) else unary


class CoordinatorServicer(pb_grpc.CoordinatorServicer):
    def __init__(self, coordinator: Coordinator, *, insecure: bool = False, limits: Limits | None = None,
                 revocations: RevocationList | None = None):
        self.coordinator = coordinator
        self.insecure = insecure  # no TLS at all: only then is the development header read
        self.revocations = revocations
        self.limits = limits or coordinator.context.limits
        self.limiter = RateLimiter(self.limits.calls_per_minute)
        self.messages = RateLimiter(self.limits.messages_per_minute)
        self.slots = StreamSlots(self.limits.streams_per_identity)
        self.watch = StreamWatch(self.limits.stream_idle_s, self._closed_idle)

    def _refuse(self, who, name: str, error: DomainError) -> DomainError:
        self.coordinator.context.refuse(who, name, error)
        return error

    def _identity(self, context, name: str) -> Identity:
        try:
            return dev_identity(context) if self.insecure else certificate_identity(context, self.revocations)
        except IdentityError as e:
            # Audited under no name (a refused identity is no one's); the peer's address says where from.
            self.coordinator.context.bursts.note("unauthenticated", "call.refused", name, "UNAUTHENTICATED",
                                                 reason=str(e)[:300], peer=context.peer())
            raise

    def _admit(self, context, name: str, request) -> Identity:
        """The caller, within the per-identity rate limit, with a request that parses, within the size
        limit, and has no NUL in any string field."""
        who = self._identity(context, name)
        alarm = self.coordinator.context.audit_log.alarm
        if alarm:  # a tampered log: nothing more is served (server/audit.py)
            raise LogUnavailable(f"the coordinator's audit log was tampered with and it serves nothing: {alarm}. "
                                 "The operator must restore the database from a backup")
        wait_ms = self.limiter.admit(str(who))
        if wait_ms:
            raise self._refuse(who, name, ResourceExhausted(
                f"{who} made more than {self.limits.calls_per_minute} calls in a minute (the coordinator's "
                f"--max-calls-per-minute); retry in {wait_ms / 1000:.1f} s", retry_after_ms=wait_ms))
        refusal = _malformed(name, request, self.limits)
        if refusal:
            raise self._refuse(who, name, refusal)
        return who

    @contextmanager
    def _stream(self, who: Identity, name: str, context):
        if not self.slots.take(str(who)):
            raise self._refuse(who, name, ResourceExhausted(
                f"{who} has {self.limits.streams_per_identity} streams open already (the coordinator's "
                "--max-streams): finish or close one first"))
        try:
            with self.watch.watching(str(who), name, context) as watched:
                yield watched
        finally:
            self.slots.give_back(str(who))

    def _messages(self, who: Identity, name: str, requests, watched):
        """A client stream's messages, each counted against the caller's message rate and checked."""
        while True:
            with StreamWatch.waiting(watched):
                message = next(requests, None)
            if message is None:
                return
            wait_ms = self.messages.admit(str(who))
            if wait_ms:
                raise self._refuse(who, name, ResourceExhausted(
                    f"{who} sent more than {self.limits.messages_per_minute} stream messages in a minute (the "
                    f"coordinator's --max-messages-per-minute); retry in {wait_ms / 1000:.1f} s: an upload "
                    "resumes where it stopped", retry_after_ms=wait_ms))
            refusal = _malformed(name, message, self.limits, f"batch {getattr(message, 'seq', '?')}: ")
            if refusal:
                raise self._refuse(who, name, refusal)
            yield message

    def _closed_idle(self, who: str, name: str) -> None:
        self.coordinator.context.bursts.note(who, "call.refused", name, "RESOURCE_EXHAUSTED",
                                             reason=f"stream idle for {self.limits.stream_idle_s} s: closed")

    @rpc
    def CreateProject(self, request, context, who):
        return _ruled_project(self.coordinator.projects.create(who, project_from_pb(request.project)))

    @rpc
    def GetProject(self, request, context, who):
        return project_to_pb(self.coordinator.projects.get(who, request.project_id))

    @rpc
    def BeginUpload(self, request, context, who):
        quality = _quality_from_pb(request.quality) if request.HasField("quality") else None
        s = self.coordinator.uploads.begin(who, request.project_id, request.schema_digest, request.key_check,
                                           request.upload_digest, request.record_count, request.batch_count, quality)
        return pb.UploadSession(upload_id=s.upload_id, stored_batches=s.stored_batches, committed=s.committed)

    @rpc
    def UploadBatches(self, request_iterator, context, who):
        with self.coordinator.uploads.stream(who) as stream:  # one audit event for the whole stream
            incoming = ((b.upload_id, b.seq, b.digest,
                         [IncomingRecord(r.ref, r.clk, dict(r.indicators), r.household) for r in b.records])
                        for b in request_iterator)
            for seq, stored in stream.store_each(incoming):
                RECORDS_STORED.labels(who.department).inc(stored.records)
                yield pb.BatchAck(seq=seq, stored=stored.records, duplicate=stored.duplicate)

    @rpc
    def CommitUpload(self, request, context, who):
        s = self.coordinator.uploads.commit(who, request.upload_id, dry_run=request.dry_run)
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
            flags_per_need_tier=_cells(r.flags_per_need_tier),
            outcomes_per_rule=_cells(r.outcomes_per_rule),
            encoding_health=[_encoding_health(h) for h in r.encoding_health],
            idle_rules=[_idle_rule(i) for i in r.idle_rules],
            upload_quality=[_quality_to_pb(u) for u in r.upload_quality],
            probe_signals=[pb.ProbeSignals(department=p.department, records_first_seen=p.records_first_seen,
                                           records_short_lived=p.records_short_lived,
                                           flags_on_first_seen_records=p.flags_on_first_seen_records,
                                           flags_held=p.flags_held) for p in r.probe_signals],
            pair_scores=[_pair_scores(s) for s in r.pair_scores],
            retention=pb.Retention(**r.retention.to_json()) if r.retention else None)

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
                explanation=f.explanation, status=f.status, since=f.since, transition_until=f.transition_until,
                match_departments=f.match_departments, explanation_zh=f.explanation_zh,
                rests_on_first_seen=f.rests_on_first_seen, upload_id=f.upload_id)

    @rpc
    def RecordOutcome(self, request, context, who):
        r = self.coordinator.reviews.record_outcome(who, request.project_id, request.ref, request.need,
                                                    request.outcome, request.run_id)
        return pb.RecordOutcomeResponse(suppressed_until=r.suppressed_until, previous_outcome=r.previous_outcome,
                                        previous_run_id=r.previous_run_id,
                                        previous_recorded_at=_iso(r.previous_recorded_at))

    @rpc
    def ProposeChange(self, request, context, who):
        kind = request.WhichOneof("change") or ""
        change = {"rules": lambda: {"rules_toml": request.rules.rules_toml},
                  "linkage": lambda: {"threshold": request.linkage.threshold,
                                      "auto_threshold": request.linkage.auto_threshold}}.get(kind, dict)()
        return _proposal(self.coordinator.approvals.propose(who, request.project_id, kind, change, request.reason))

    @rpc
    def ListProposals(self, request, context, who):
        found = self.coordinator.approvals.list(who, request.project_id, request.state)
        return pb.ProposalList(proposals=[_proposal(p) for p in found])

    @rpc
    def GetProposal(self, request, context, who):
        return _proposal(self.coordinator.approvals.get(who, request.proposal_id))

    @rpc
    def ApproveProposal(self, request, context, who):
        return _proposal(self.coordinator.approvals.approve(who, request.proposal_id, request.note,
                                                                 request.on_behalf_of, request.oidc))

    @rpc
    def RejectProposal(self, request, context, who):
        return _proposal(self.coordinator.approvals.reject(who, request.proposal_id, request.note,
                                                                request.on_behalf_of, request.oidc))

    @rpc
    def SetSchedule(self, request, context, who):
        return _schedule(self.coordinator.schedules.set(who, request.project_id, request.every, request.day,
                                                        request.at, request.start, request.start_now))

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
                department=request.department, since=request.since, until=request.until, run_id=request.run_id,
                kinds=tuple(request.kinds)):
            yield pb.AuditEvent(seq=seq, body=body)

    @rpc
    def ListProjects(self, request, context, who):
        return pb.ProjectList(projects=[pb.ProjectSummary(
            project_id=p.project_id, reference_date=p.reference_date, threshold=p.threshold,
            auto_threshold=p.auto_threshold, created_by=p.created_by, created_at=_iso(p.created_at), runs=p.runs,
            departments=[pb.DepartmentSpec(name=d, indicators=i) for d, i in sorted(p.departments.items())])
            for p in self.coordinator.listings.projects(who)])

    @rpc
    def ListRuns(self, request, context, who):
        return pb.RunList(runs=[pb.RunSummary(
            run_id=r.run_id, project_id=r.project_id, state=r.state, as_of=r.as_of, started_by=r.started_by,
            created_at=_iso(r.created_at), finished_at=_iso(r.finished_at), persons=r.persons)
            for r in self.coordinator.listings.runs(who, request.project_id, request.limit)])

    @rpc
    def RecordView(self, request, context, who):
        return pb.RecordViewResponse(seq=self.coordinator.listings.record_view(who, request.viewer, request.page,
                                                                               request.oidc))


def _malformed(name: str, request, limits: Limits, where: str = "") -> DomainError | None:
    """Why a request (or one message of a stream) is refused before the domain sees it."""
    if isinstance(request, Undecodable) and request.size:
        return ResourceExhausted(f"{where}the {name} message is {request.size} bytes; this coordinator takes at "
                                 f"most {limits.max_message_bytes} (--max-message-bytes)")
    if isinstance(request, Undecodable):
        return InvalidArgument(f"the {name} request is not a valid fedlink.v1 message ({request.error})")
    field = _nul_field(request) if isinstance(request, Message) else None
    if field and where:
        return InvalidArgument(f"{where}field {field} contains a NUL character")
    if field:
        return InvalidArgument(f"field {field} contains a NUL character, which no identifier or name may hold")
    return None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds") if epoch else ""


def _cells(cells) -> list:
    return [pb.CountCell(key=c.key, count=c.count, suppressed=c.suppressed) for c in cells]


def _pair_scores(s) -> pb.PairScores:
    below = s.below_floor
    return pb.PairScores(pair=s.pair, threshold=s.threshold, floor=s.floor, bin_width=s.bin_width,
                         bins=_cells(s.bins), below_floor=pb.CountCell(key=below.key, count=below.count,
                                                                       suppressed=below.suppressed))


def _encoding_health(h) -> pb.EncodingHealth:
    return pb.EncodingHealth(
        department=h.department, upload_id=h.upload_id, fill_rate=h.fill_rate, fill_min=h.fill_min,
        fill_max=h.fill_max, empty_filters=h.empty_filters, max_duplicates=h.max_duplicates,
        duplicate_limit=h.duplicate_limit, position_min=h.position_min, position_max=h.position_max,
        chi2_per_dof=h.chi2_per_dof, constant_positions=h.constant_positions, dead_positions=h.dead_positions,
        warnings=h.warnings)


_QUALITY_COUNTS = ("blank", "unreadable", "invalid_ids", "pinyin_only", "converted")


def _quality_from_pb(m: pb.UploadQuality) -> ExtractQuality:
    return ExtractQuality(m.records, tuple(FieldQuality(f.column, f.kind, *(getattr(f, k) for k in _QUALITY_COUNTS))
                                           for f in m.fields))


def _quality_to_pb(u: ExtractQuality) -> pb.UploadQuality:
    return pb.UploadQuality(department=u.department, upload_id=u.upload_id, records=u.records, fields=[
        pb.FieldQuality(column=f.column, kind=f.kind, **{k: getattr(f, k) for k in _QUALITY_COUNTS})
        for f in u.fields])


def _idle_rule(rule) -> pb.IdleRule:
    return pb.IdleRule(rule=rule.rule, need=rule.need, departments=[d for d, _ in rule.missing],
                       explanation=rule.sentence())


def _ruled_project(ruled) -> pb.Project:
    out = project_to_pb(ruled.project)
    out.idle_rules.extend(_idle_rule(i) for i in ruled.idle_rules)
    return out


def _proposal(p) -> pb.Proposal:
    return pb.Proposal(
        proposal_id=p.proposal_id, project_id=p.project_id, kind=p.kind, state=p.state, reason=p.reason,
        proposed_by=p.proposed_by, proposed_at=p.proposed_at, expires_at=p.expires_at, decided_by=p.decided_by,
        decided_at=p.decided_at, note=p.note, newly_disclosed=p.diff.newly_disclosed,
        items=[pb.ProposalItem(area=i.area, item=i.item, before=i.before, after=i.after, widens=i.widens,
                               plain=i.plain) for i in p.diff.items],
        rules_toml=p.change.get("rules_toml", ""))


def _schedule(s) -> pb.Schedule:
    return pb.Schedule(project_id=s.project_id, every=s.every, day=s.day, at=s.at, next_due=s.next_due,
                       last_run_id=s.last_run_id, last_due=s.last_due, last_error=s.last_error)
