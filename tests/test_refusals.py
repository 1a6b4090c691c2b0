"""Every kind of refusal leaves an audit event, and a flood of one kind leaves
one event and a count: bad identity, oversized message, rate limit, stream
limit, idle stream, message rate, open uploads; an expired upload is
deleted and audited. Real coordinators with mutual TLS, real databases."""
from __future__ import annotations

import datetime as dt
import json
import threading
import time

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import update

from abuse import Abuser
from fedlink.client import CoordinatorClient
from fedlink.pki import Credentials, credentials_for
from fedlink.schema import Project
from fedlink.v1 import coordinator_pb2 as pb
from procs import wait_for
from server import store as t
from server.limits import Limits
from server.serve import start


@pytest.fixture
def serve(pki, database, tmp_path):
    started = []

    def make(**limits):
        running = start("127.0.0.1:0", database, credentials=credentials_for(pki, "coordinator"),
                        limits=Limits(**limits), audit_key=tmp_path / "log" / "audit-signing.key",
                        witnesses=pki / "coordinator" / "witnesses.toml")
        running.address = f"127.0.0.1:{running.port}"
        project = Project.default("pilot", reference_date="2025-06-30")
        running.coordinator.projects.create(_operator(), project)
        running.project = project
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop(grace=1)


def _operator():
    from fedlink.identity import Identity

    return Identity("operator", "operator")


def refusals(running, method: str = "") -> list[dict]:
    """The call.refused events (and their counted repeats), oldest first."""
    running.coordinator.context.bursts.flush(everything=True)
    events = [json.loads(body) for _, body in running.coordinator.context.audit_log.events()]
    return [e for e in events if e["kind"].startswith("call.refused") and e["details"]["method"] in (method or
            e["details"]["method"])]


def test_a_certificate_without_a_fedlink_identity_is_refused_and_audited(serve, pki, tmp_path):
    running = serve()
    ca_key = serialization.load_pem_private_key((pki / "ca" / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((pki / "ca" / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "x")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .sign(ca_key, hashes.SHA256()))
    (tmp_path / "x.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "x.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    nobody = CoordinatorClient(running.address, Credentials(tmp_path / "x.pem", tmp_path / "x.key", pki / "ca" / "ca.pem"))
    for _ in range(20):
        with pytest.raises(grpc.RpcError) as refused:
            nobody._call(nobody.stub.GetCheckpoint, pb.GetCheckpointRequest())
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    first, repeats = refusals(running, "GetCheckpoint")
    assert first["actor"] == "unauthenticated" and "not issued as a fedlink identity" in first["details"]["reason"]
    assert first["details"]["peer"].startswith("ipv4:127.0.0.1:")
    assert repeats["kind"] == "call.refused.repeated" and repeats["details"]["count"] == 19


def test_an_oversized_message_is_refused_by_the_coordinator_and_audited(serve, pki):
    running = serve(max_message_bytes=4096)
    agent = Abuser(running.address, pki)
    with pytest.raises(grpc.RpcError) as refused:
        agent._call(agent.stub.GetProject, pb.GetProjectRequest(project_id="p" * 10_000))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "10003 bytes" in refused.value.details() and "--max-message-bytes" in refused.value.details()
    [event] = refusals(running, "GetProject")
    assert event["actor"] == "agent:population" and event["details"]["status"] == "RESOURCE_EXHAUSTED"


def test_a_flood_over_the_rate_limit_is_one_event_and_a_count(serve, pki):
    running = serve(calls_per_minute=3)
    agent = Abuser(running.address, pki)
    codes = []
    for _ in range(40):
        try:
            agent._call(agent.stub.GetCheckpoint, pb.GetCheckpointRequest())
            codes.append("OK")
        except grpc.RpcError as e:
            codes.append(e.code().name)
    assert codes.count("OK") == 3 and codes.count("RESOURCE_EXHAUSTED") == 37
    first, repeats = refusals(running, "GetCheckpoint")
    assert "--max-calls-per-minute" in first["details"]["reason"]
    assert repeats["details"]["count"] == 36
    # The three checkpoint reads that went through: one event, then a count.
    reads = [json.loads(b) for _, b in running.coordinator.context.audit_log.events(kind="audit.read")]
    reads += [json.loads(b) for _, b in running.coordinator.context.audit_log.events(kind="audit.read.repeated")]
    assert [r["kind"] for r in reads] == ["audit.read", "audit.read.repeated"] and reads[1]["details"]["count"] == 2


def test_streams_beyond_the_per_identity_limit_are_refused_and_audited(serve, pki):
    running = serve(streams_per_identity=2)
    agent = Abuser(running.address, pki)
    release = threading.Event()
    held = [agent.idle_stream(release) for _ in range(2)]
    wait_for(lambda: _open(running) == 2, "two streams")
    third = agent.idle_stream(release)
    wait_for(lambda: third.get("done"), "the third stream refused", limit=20)
    assert third["error"].code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-streams" in third["error"].details()
    assert not any(h.get("done") for h in held)
    release.set()
    wait_for(lambda: all(h.get("done") for h in held), "the held streams end")
    [event] = refusals(running, "UploadBatches")
    assert "--max-streams" in event["details"]["reason"]


def _open(running) -> int:
    return len(running.watch._streams)


def test_an_idle_stream_is_closed_and_audited(serve, pki):
    running = serve(stream_idle_s=1)
    agent = Abuser(running.address, pki)
    release = threading.Event()
    idle = agent.idle_stream(release)
    wait_for(lambda: idle.get("done"), "the idle stream closed", limit=30)
    release.set()
    assert idle["error"].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "waited 1 s on its client" in idle["error"].details()
    [event] = refusals(running, "UploadBatches")
    assert event["actor"] == "agent:population" and "idle" in event["details"]["reason"]


def test_stream_messages_count_against_a_rate_of_their_own(serve, pki):
    running = serve(messages_per_minute=5)
    agent = Abuser(running.address, pki)
    with pytest.raises(grpc.RpcError) as refused:
        agent.upload_batches(running.project, Abuser.one_record_batches(running.project, 10))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max-messages-per-minute" in refused.value.details()
    [event] = refusals(running, "UploadBatches")
    assert "stream messages" in event["details"]["reason"]
    # The five batches stored before the refusal are in the log, as one event.
    [batches] = [json.loads(b) for _, b in running.coordinator.context.audit_log.events(kind="upload.batches")]
    assert batches["details"]["batches"] == 5 and batches["details"]["first_seq"] == 0


def test_open_uploads_are_capped_per_department_and_expire(serve, pki):
    running = serve(open_uploads_per_department=2, upload_expiry_hours=1)
    agent = Abuser(running.address, pki)
    kept = [agent.begin(running.project).upload_id for _ in range(2)]
    for _ in range(5):
        with pytest.raises(grpc.RpcError) as refused:
            agent.begin(running.project)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max-open-uploads 2" in refused.value.details()
    first, repeats = refusals(running, "BeginUpload")
    assert repeats["details"]["count"] == 4
    # Two hours later (the store edited, as time would), the stale uploads expire at the next BeginUpload.
    with running.coordinator.store.write() as conn:
        conn.execute(update(t.uploads).values(created_at=time.time() - 7200))
    assert agent.begin(running.project).upload_id not in kept
    expired = [json.loads(b) for _, b in running.coordinator.context.audit_log.events(kind="upload.expired")]
    assert sorted(e["details"]["upload_id"] for e in expired) == sorted(kept)
    with running.coordinator.store.read() as conn:
        assert not conn.execute(t.uploads.select().where(t.uploads.c.upload_id.in_(kept))).all()
