"""The key ceremony with real commands and a real coordinator process: each
party's key stays in its own folder, the CA operator signs requests and
revokes certificates, the coordinator picks up the CRL without a restart,
its certificate names a real host, and `--insecure` never mixes with TLS."""
from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import grpc
import pytest

from fedlink.client import CoordinatorCertificateError, CoordinatorClient
from fedlink.pki import credentials_for
from fedlink.v1 import coordinator_pb2 as pb
from procs import FEDLINK, CoordinatorProcess, free_port

HOST = "coordinator.example.gov.cn"


def fedlink(*args, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([*FEDLINK, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def enrol(site: Path, role: str, *args: str, tarball: bool = False) -> Path:
    """One party's part of the ceremony: request in its own folder, signed and bundled by the CA operator."""
    party = args[args.index("--department") + 1] if "--department" in args else role
    party = f"agent-{party}" if role == "agent" else party
    fedlink("pki", "request", "--role", role, *args, "--out", party, cwd=site)
    key = (site / party / f"{party}.key").read_bytes()
    extra = ["--audit-key", "coordinator/audit-signing.pub"] if role == "coordinator" else []
    fedlink("pki", "sign", f"{party}/{party}.csr", "--ca", "ca", "--out", f"issued/{party}.pem", *extra, cwd=site)
    if tarball:
        fedlink("pki", "bundle", f"issued/{party}.pem", "--ca", "ca", "--out", f"{party}.tar.gz", cwd=site)
        with tarfile.open(site / f"{party}.tar.gz") as tar:
            tar.extractall(site / party, filter="data")
    else:
        fedlink("pki", "bundle", f"issued/{party}.pem", "--ca", "ca", "--out", party, cwd=site)
    assert (site / party / f"{party}.key").read_bytes() == key  # the key never moved
    return site / party


@pytest.fixture
def ceremony(tmp_path) -> Path:
    fedlink("pki", "new-ca", "ca", cwd=tmp_path)
    enrol(tmp_path, "coordinator", "--dns", HOST)
    enrol(tmp_path, "officer")
    enrol(tmp_path, "agent", "--department", "population", tarball=True)
    enrol(tmp_path, "agent", "--department", "civil_affairs")
    return tmp_path


def client(site: Path, party: str, address: str, **kwargs) -> CoordinatorClient:
    return CoordinatorClient(address, credentials_for(site, party), **kwargs)


def head(c: CoordinatorClient) -> int:
    """The size of the coordinator's latest checkpoint."""
    from fedlink.checkpoint import parse_checkpoint
    from fedlink.note import parse

    note = c._call(c.stub.GetCheckpoint, pb.GetCheckpointRequest(), timeout=10).checkpoint
    return parse_checkpoint(parse(note).text).size


def test_each_folder_holds_only_its_own_keys(ceremony):
    assert sorted(p.name for p in (ceremony / "coordinator").iterdir()) == [
        "audit-signing.key", "audit-signing.pub", "audit-signing.vkey", "ca.pem", "coordinator.csr", "coordinator.key",
        "coordinator.pem", "crl.pem"]
    assert sorted(p.name for p in (ceremony / "agent-population").glob("*.key")) == ["agent-population.key"]
    # Every bundle carries the log key every party pins: the coordinator's own audit key, named for the
    # origin its checkpoints carry (its certificate's host name).
    from fedlink.audit import log_signing_key

    log_key = log_signing_key(ceremony / "coordinator" / "audit-signing.key", f"{HOST}/fedlink-audit").verifier()
    for party in ("coordinator", "officer", "agent-population", "agent-civil_affairs"):
        assert (ceremony / party / "audit-signing.vkey").read_text() == log_key.encode() + "\n"
    assert list(ceremony.glob("ca/*.key")) == [ceremony / "ca" / "ca.key"]


def test_a_revoked_department_is_refused_at_its_next_call_without_a_restart(ceremony, database):
    coordinator = CoordinatorProcess(ceremony, ceremony, database)
    try:
        population = client(ceremony, "agent-population", coordinator.address)
        civil = client(ceremony, "agent-civil_affairs", coordinator.address)
        head(population), head(civil)
        pid = coordinator.pid
        done = fedlink("pki", "revoke", "agent-population/agent-population.pem", "--ca", "ca",
                       "--publish", "coordinator/crl.pem", cwd=ceremony)
        assert "agent:population" in done.stdout
        with pytest.raises(grpc.RpcError) as refused:
            head(population)  # the same channel: the check is per call, not per handshake
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in refused.value.details() and "agent:population" in refused.value.details()
        fresh = client(ceremony, "agent-population", coordinator.address)
        with pytest.raises(grpc.RpcError, match="revoked"):
            head(fresh)
        assert head(civil) > 0  # the others work on
        assert coordinator.pid == pid and coordinator.proc.poll() is None
        officer = client(ceremony, "officer", coordinator.address)
        events = [e.body for e in officer.stub.ListAuditEvents(pb.ListAuditEventsRequest(kind="call.refused"))]
        assert any('"unauthenticated"' in b and "revoked" in b for b in events)
    finally:
        coordinator.stop()


def test_the_coordinator_will_not_serve_from_a_folder_holding_the_ca_key(ceremony, database):
    shutil.copy(ceremony / "ca" / "ca.key", ceremony / "coordinator" / "ca.key")
    done = fedlink("coordinator", "serve", "--pki", "coordinator", "--database", database,
                   "--listen", f"127.0.0.1:{free_port()}", cwd=ceremony, ok=False)
    assert done.returncode == 2, done.stderr
    assert "ca.key" in done.stderr and "not the coordinator's" in done.stderr and "Traceback" not in done.stderr


def test_agents_reach_the_coordinator_by_its_host_name_and_a_wrong_name_says_so(ceremony, database):
    coordinator = CoordinatorProcess(ceremony, ceremony, database)
    try:
        by_name = client(ceremony, "agent-population", coordinator.address, server_name=HOST)
        assert head(by_name) >= 0
        wrong = client(ceremony, "agent-population", coordinator.address, server_name="wrong.example.gov.cn",
                       retries=3)
        with pytest.raises(CoordinatorCertificateError, match="does not name 'wrong.example.gov.cn'"):
            wrong._retrying("", lambda: head(wrong))  # a certificate problem is not retried as "unreachable"
    finally:
        coordinator.stop()


def test_insecure_cannot_be_combined_with_certificates(ceremony, database):
    done = fedlink("coordinator", "serve", "--pki", "coordinator", "--insecure", "--database", database,
                   "--listen", f"127.0.0.1:{free_port()}", cwd=ceremony, ok=False)
    assert done.returncode == 2
    assert "--insecure cannot be combined with --pki" in done.stderr and "Traceback" not in done.stderr


def test_with_tls_a_claimed_identity_header_changes_nothing(ceremony, database):
    coordinator = CoordinatorProcess(ceremony, ceremony, database)
    try:
        forged = client(ceremony, "agent-population", coordinator.address)
        forged.metadata = (("fedlink-dev-identity", "officer:evil"),)
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(forged._call(forged.stub.ListAuditEvents, pb.ListAuditEventsRequest())))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "your certificate says agent" in refused.value.details()
    finally:
        coordinator.stop()
    from dbutil import dbapi

    with dbapi(database) as db:
        actors = {a for (a,) in db.execute("select actor from audit_events")}
    assert "agent:population" in actors and not any("evil" in a for a in actors)
