"""One client cannot starve the others: while one department's agent holds 16
idle upload streams, streams 5,000 one-record batches and calls BeginUpload
200 times, another department's calls and the health check still complete
within their normal deadlines, against a real coordinator process."""
from __future__ import annotations

import json
import threading

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from abuse import Abuser
from fedlink.client import CoordinatorClient
from fedlink.pki import channel_credentials, credentials_for
from fedlink.schema import Project
from fedlink.v1 import coordinator_pb2 as pb
from procs import CoordinatorProcess, wait_for


def test_a_misbehaving_agent_cannot_delay_another_department_or_the_health_check(pki, database, tmp_path):
    coordinator = CoordinatorProcess(tmp_path, pki, database)
    try:
        project = Project.default("pilot", reference_date="2025-06-30")
        with CoordinatorClient.connect(coordinator.address, pki, "operator") as op:
            op._call(op.stub.CreateProject, pb.CreateProjectRequest(project=_project_pb(project)))
        abuser = Abuser(coordinator.address, pki)
        release = threading.Event()
        flood: dict = {}
        batches, acks = Abuser.one_record_batches(project, 5000), []

        def stream_flood():
            flood["result"] = abuser.upload_batches(project, batches, acks)

        flooding = threading.Thread(target=stream_flood, daemon=True)
        flooding.start()
        wait_for(lambda: len(acks) > 10, "the batch flood under way")
        idle = [abuser.idle_stream(release) for _ in range(16)]
        begins = []
        for _ in range(200):
            try:
                abuser.begin(project)
                begins.append("OK")
            except grpc.RpcError as e:
                begins.append(e.code().name)

        # The abuse is on: idle streams are held open, the batch flood is still streaming.
        other = CoordinatorClient.connect(coordinator.address, pki, "agent-civil_affairs")
        health = health_pb2_grpc.HealthStub(grpc.secure_channel(
            coordinator.address, channel_credentials(credentials_for(pki, "officer"))))
        for _ in range(5):
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
                health_pb2.HealthCheckResponse.SERVING
            assert other._call(other.stub.GetProject, pb.GetProjectRequest(project_id="pilot"),
                               timeout=10).project_id == "pilot"
            assert other._call(other.stub.GetCheckpoint, pb.GetCheckpointRequest(), timeout=10).checkpoint
        held = [s for s in idle if not s.get("done")]
        assert held, "the idle streams were all gone before the other calls were made"
        refused = [s for s in idle if s.get("done")]
        assert all(s["error"].code() == grpc.StatusCode.RESOURCE_EXHAUSTED for s in refused)
        assert len(held) <= 4  # --max-streams: the rest were refused, not queued

        # 200 BeginUpload: a handful open, the rest refused; none declares an upload that never expires.
        assert begins.count("OK") <= 4 and begins.count("RESOURCE_EXHAUSTED") >= 196

        flooding.join(600)
        upload_id, acks = flood["result"]
        assert len(acks) == 5000
        release.set()
        wait_for(lambda: all(s.get("done") for s in idle), "the idle streams end")
        officer = CoordinatorClient.connect(coordinator.address, pki, "officer")
        stream_events = [json.loads(e.body) for e in officer.stub.ListAuditEvents(
            pb.ListAuditEventsRequest(kind="upload.batches"))]
        # 5,000 batches, one audit event.
        assert [e["details"]["batches"] for e in stream_events if e["details"]["upload_id"] == upload_id] == [5000]
        refusals = [json.loads(e.body) for e in officer.stub.ListAuditEvents(
            pb.ListAuditEventsRequest(kind="call.refused"))]
        assert len([r for r in refusals if r["details"]["method"] == "BeginUpload"]) == 1
    finally:
        coordinator.stop()


def _project_pb(project: Project):
    from fedlink.wire import project_to_pb

    return project_to_pb(project)
