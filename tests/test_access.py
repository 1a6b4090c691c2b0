"""Who may call what: identity comes from the verified certificate, and a
caller without one, from another CA or in the wrong role is refused."""
from __future__ import annotations

import grpc
import pytest

from fedlink.pki import channel_credentials, credentials_for
from fedlink.v1 import coordinator_pb2 as pb
from fedlink.v1 import coordinator_pb2_grpc as pb_grpc


def stub_for(address: str, pki, party: str):
    channel = grpc.secure_channel(address, channel_credentials(credentials_for(pki, party)))
    return channel, pb_grpc.CoordinatorStub(channel)


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details()


def test_client_without_certificate_is_refused(coordinator, pki):
    ca = (pki / "ca" / "ca.pem").read_bytes()
    channel = grpc.secure_channel(coordinator.address, grpc.ssl_channel_credentials(root_certificates=ca))
    stub = pb_grpc.CoordinatorStub(channel)
    code, _ = code_of(lambda: stub.GetProject(pb.GetProjectRequest(project_id="pilot"), timeout=5))
    assert code == grpc.StatusCode.UNAVAILABLE
    channel.close()


def test_plaintext_client_is_refused(coordinator):
    channel = grpc.insecure_channel(coordinator.address)
    stub = pb_grpc.CoordinatorStub(channel)
    code, _ = code_of(lambda: stub.GetProject(pb.GetProjectRequest(project_id="pilot"), timeout=5))
    assert code == grpc.StatusCode.UNAVAILABLE
    channel.close()


def test_certificate_from_another_ca_is_refused(coordinator, pki, foreign_pki):
    own = credentials_for(pki, "operator")
    foreign = credentials_for(foreign_pki, "operator")
    # Trusts our CA (so the server is accepted) but presents a foreign client certificate.
    creds = grpc.ssl_channel_credentials(root_certificates=own.ca.read_bytes(), private_key=foreign.key.read_bytes(),
                                         certificate_chain=foreign.cert.read_bytes())
    channel = grpc.secure_channel(coordinator.address, creds)
    stub = pb_grpc.CoordinatorStub(channel)
    code, _ = code_of(lambda: stub.StartRun(pb.StartRunRequest(project_id="pilot"), timeout=5))
    assert code == grpc.StatusCode.UNAVAILABLE
    channel.close()


def test_agent_calling_operator_methods_is_refused(coordinator, pki, project):
    channel, stub = stub_for(coordinator.address, pki, "agent-population")
    code, details = code_of(lambda: stub.StartRun(pb.StartRunRequest(project_id="pilot"), timeout=5))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "operator" in details and "agent" in details
    code, _ = code_of(lambda: stub.CreateProject(pb.CreateProjectRequest(project=pb.Project(project_id="x")),
                                                 timeout=5))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = code_of(lambda: stub.GetReport(pb.GetReportRequest(run_id="r"), timeout=5))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    channel.close()


def test_operator_cannot_upload_or_pull_flags(coordinator, pki, project):
    channel, stub = stub_for(coordinator.address, pki, "operator")
    code, _ = code_of(lambda: list(stub.PullFlags(pb.PullFlagsRequest(project_id="pilot"), timeout=5)))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = code_of(lambda: stub.BeginUpload(pb.BeginUploadRequest(project_id="pilot"), timeout=5))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    channel.close()


def test_department_cannot_pull_another_departments_flags(coordinator, pki, project):
    channel, stub = stub_for(coordinator.address, pki, "agent-education")
    request = pb.PullFlagsRequest(project_id="pilot", department="medical_insurance")
    code, details = code_of(lambda: list(stub.PullFlags(request, timeout=5)))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "education" in details and "medical_insurance" in details
    channel.close()


def test_department_outside_the_project_is_refused(coordinator, pki, operator):
    from fedlink.schema import Project

    operator.create_project(Project.default("health-only", departments=("medical_insurance", "civil_affairs")))
    channel, stub = stub_for(coordinator.address, pki, "agent-education")
    code, details = code_of(lambda: stub.GetProject(pb.GetProjectRequest(project_id="health-only"), timeout=5))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "does not take part" in details
    channel.close()


def test_unknown_project_is_not_found(coordinator, pki):
    channel, stub = stub_for(coordinator.address, pki, "operator")
    code, details = code_of(lambda: stub.StartRun(pb.StartRunRequest(project_id="nope"), timeout=5))
    assert code == grpc.StatusCode.NOT_FOUND and "nope" in details
    channel.close()


def test_refusals_are_audited(coordinator, pki, project):
    from sqlalchemy import select

    from server import store as t

    channel, stub = stub_for(coordinator.address, pki, "agent-population")
    code_of(lambda: stub.StartRun(pb.StartRunRequest(project_id="pilot"), timeout=5))
    channel.close()
    with coordinator.coordinator.store.read() as conn:
        rows = conn.execute(select(t.audit_events).where(t.audit_events.c.kind == "call.refused")).all()
    assert [(r.actor, '"StartRun"' in r.body) for r in rows] == [("agent:population", True)]


def test_insecure_mode_only_on_loopback(tmp_path):
    from server.serve import start

    with pytest.raises(ValueError, match="loopback"):
        start("0.0.0.0:0", tmp_path / "db.sqlite", insecure=True)
    with pytest.raises(ValueError, match="mutual TLS"):
        start("127.0.0.1:0", tmp_path / "db.sqlite")


def test_health_and_reflection_are_served(coordinator, pki):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    channel = grpc.secure_channel(coordinator.address, channel_credentials(credentials_for(pki, "officer")))
    status = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="fedlink.v1.Coordinator"), timeout=5)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    reply = next(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
    names = {s.name for s in reply.list_services_response.service}
    assert "fedlink.v1.Coordinator" in names
    channel.close()
