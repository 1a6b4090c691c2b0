"""What the coordinator's operator sees, from a real `fedlink coordinator
serve` process: a log line (JSON here) for every upload, run, phase,
refusal and scheduled run, with no extract value and no record reference in
it; quiet migrations; Prometheus metrics scraped from the real endpoint; a
plain HTTP health check that needs no certificate; gRPC reflection v1 and
v1alpha; a port in use refused."""
from __future__ import annotations

import base64
import csv
import json
import re
import socket
import urllib.error
import urllib.request

import grpc
import pytest

from agents.client import Agent
from agents.config import load_config
from conftest import REFERENCE_DATE
from dbutil import query, scalar
from fedlink.operator import Operator
from fedlink.schema import Project
from procs import CoordinatorProcess, agent_toml, free_port, wait_for

DEPARTMENTS = ("population", "civil_affairs", "education")
IDENTITY_COLUMNS = ("record_id", "name", "birth_date", "resident_id", "address", "phone", "household_id")


def scrape(port: int) -> dict[tuple, float]:
    """The samples of the real /metrics page, parsed by Prometheus' own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: dict, name: str, **labels) -> float:
    return samples[(name, frozenset(labels.items()))]


def extract_values(scenario) -> set[str]:
    """Every identifying value of the extracts the agents read (long enough to be one person's)."""
    values = set()
    for d in DEPARTMENTS:
        with open(scenario / f"{d}.csv", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                values |= {row[c] for c in IDENTITY_COLUMNS if len(row.get(c) or "") >= 6}
    return values


@pytest.fixture(scope="module")
def served(tmp_path_factory, pki, scenario):
    """A real coordinator logging JSON, with its metrics and health ports; three
    departments uploaded, one refused call, one run and one scheduled run.
    One for the module: the tests read what it did."""
    from agents.secret import new_secret
    from dbutil import new_database

    tmp_path = tmp_path_factory.mktemp("operated")
    secret_file = tmp_path / "project.secret"
    new_secret(secret_file)
    metrics, health = free_port(), free_port()
    site = CoordinatorProcess(tmp_path, pki, new_database(tmp_path), args=(
        "--log-format", "json", "--metrics-port", str(metrics), "--health-port", str(health)))
    site.metrics_port, site.health_port = metrics, health
    try:
        with Operator.connect(site.address, pki) as op:
            op.create_project(Project.default("pilot", reference_date=REFERENCE_DATE))
            for d in DEPARTMENTS:
                config = agent_toml(tmp_path, pki, d, site.address, scenario / f"{d}.csv", secret_file)
                with Agent(load_config(config), show_progress=False) as agent:
                    agent.upload()
            with pytest.raises(grpc.RpcError):
                op.start_run("no-such-project", REFERENCE_DATE)
            assert op.watch(op.start_run("pilot", REFERENCE_DATE)) == "done"
            op.set_schedule("pilot", "1d", at="00:00", start_now=True)  # today's occurrence: now
            scheduled = wait_for(lambda: op.schedule("pilot").last_run_id, "the scheduled run")
            assert op.watch(scheduled) == "done"
        yield site
    finally:
        site.stop()


def test_metrics_worth_scraping(served):
    site = served
    m = scrape(site.metrics_port)
    rpc = "fedlink_rpc_duration_seconds"
    assert sample(m, f"{rpc}_count", method="UploadBatches", code="OK") >= 3
    assert sample(m, f"{rpc}_bucket", method="UploadBatches", code="OK", le="+Inf") >= 3
    assert sample(m, f"{rpc}_count", method="StartRun", code="NOT_FOUND") == 1
    for d in DEPARTMENTS:
        held = scalar(site.database, f"select record_count from uploads where department = '{d}'")
        assert sample(m, "fedlink_current_records", project="pilot", department=d) == held
        assert sample(m, "fedlink_records_stored_total", department=d) == held
    for phase in ("load", "compare", "cluster", "rules", "store"):
        assert sample(m, "fedlink_run_phase_duration_seconds_count", phase=phase) == 2
    assert sample(m, "fedlink_runs_total", state="done") == 2
    assert sample(m, "fedlink_open_uploads") == 0
    assert sample(m, "fedlink_audit_events") == scalar(site.database, "select count(*) from audit_events")
    assert sample(m, "process_resident_memory_bytes") > 0


def test_health_over_plain_http_needs_no_certificate(served):
    site = served
    with urllib.request.urlopen(f"http://127.0.0.1:{site.health_port}/healthz", timeout=10) as answer:
        assert answer.status == 200 and answer.read() == b"SERVING\n"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{site.health_port}/", timeout=10)
    assert e.value.code == 404
    # The gRPC port itself still talks only to holders of a project certificate.
    with grpc.insecure_channel(site.address) as channel, pytest.raises(grpc.RpcError):
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)


def test_the_log_has_a_line_for_each_thing_and_no_personal_data(served, scenario):
    site = served
    assert site.stop() == 0
    text = site.log.read_text(encoding="utf-8")
    # Every line of ours is JSON; gRPC's C core writes its own (a probe without a certificate).
    lines = [json.loads(line) for line in text.splitlines() if not re.match(r"[IWEF]\d{4} ", line)]
    events = [e.get("event") for e in lines]
    for kind in ("schema", "serving", "upload.begin", "upload.commit", "call.refused", "run.start", "run.phase",
                 "run.done", "schedule.set", "schedule.fired"):
        assert kind in events, f"no {kind} line in the log"
    assert events.count("upload.commit") == 3 and events.count("run.done") == 2
    phases = {e["phase"] for e in lines if e.get("event") == "run.phase"}
    assert {"load", "compare", "cluster", "rules", "store"} <= phases
    refused = next(e for e in lines if e.get("event") == "call.refused")
    assert refused["method"] == "StartRun" and refused["status"] == "NOT_FOUND"
    assert all(e["time"].endswith("+00:00") or e["time"][-6] in "+-" for e in lines)  # ISO 8601 with zone
    # Quiet migrations: one line with the schema version, none of Alembic's.
    assert "alembic" not in text and sum(e.get("event") == "schema" for e in lines) == 1
    # No personal data: no identifying value of any extract, no record's keyed reference.
    leaked = {v for v in extract_values(scenario) if v in text}
    assert not leaked, f"extract values in the log: {sorted(leaked)[:5]}"
    refs = [r for (r,) in query(site.database, "select ref from records")]
    assert refs and not any(bytes(r).hex() in text or base64.b64encode(bytes(r)).decode() in text for r in refs)


def test_health_says_not_serving_while_stopping(pki, database, tmp_path):
    from fedlink.pki import credentials_for
    from server.serve import start

    running = start("127.0.0.1:0", database, credentials=credentials_for(pki, "coordinator"),
                    health_address="127.0.0.1:0", audit_key=tmp_path / "log" / "audit-signing.key",
                    witnesses=pki / "coordinator" / "witnesses.toml")
    try:
        url = f"http://127.0.0.1:{running.health_port}/healthz"
        assert urllib.request.urlopen(url, timeout=10).status == 200
        running.health.enter_graceful_shutdown()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, timeout=10)
        assert e.value.code == 503 and e.value.read() == b"NOT_SERVING: shutting down\n"
    finally:
        running.stop(grace=1)


def _v1_messages():
    """Message classes of grpc.reflection.v1, built from the v1alpha file with
    its package renamed: what a v1-only client (grpcurl, Postman) sends."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from grpc_reflection.v1alpha import reflection_pb2 as alpha

    file = descriptor_pb2.FileDescriptorProto()
    alpha.DESCRIPTOR.CopyToProto(file)
    file.name, file.package = "grpc/reflection/v1/reflection.proto", "grpc.reflection.v1"
    file.ClearField("service")  # the messages are what a client sends and parses
    for message in file.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(".grpc.reflection.v1alpha.", ".grpc.reflection.v1.")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    get = message_factory.GetMessageClass
    return (get(pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")),
            get(pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")))


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_answers_in_both_versions(coordinator, pki, version):
    from fedlink.pki import channel_credentials, credentials_for

    if version == "v1":
        request_type, response_type = _v1_messages()
    else:
        from grpc_reflection.v1alpha import reflection_pb2 as alpha

        request_type, response_type = alpha.ServerReflectionRequest, alpha.ServerReflectionResponse
    creds = channel_credentials(credentials_for(pki, "officer"))
    with grpc.secure_channel(coordinator.address, creds) as channel:
        call = channel.stream_stream(f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                                     request_serializer=request_type.SerializeToString,
                                     response_deserializer=response_type.FromString)
        listed, symbol = call(iter([request_type(list_services=""),
                                    request_type(file_containing_symbol="fedlink.v1.Coordinator")]), timeout=10)
    names = {s.name for s in listed.list_services_response.service}
    assert {"fedlink.v1.Coordinator", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert symbol.file_descriptor_response.file_descriptor_proto  # the service's .proto, for grpcurl describe


def test_a_port_in_use_is_refused_not_shared(coordinator, pki, database, tmp_path):
    from fedlink.pki import credentials_for
    from server.serve import start

    with pytest.raises(OSError, match=f"cannot listen on {coordinator.address}: the port is in use"):
        start(coordinator.address, tmp_path / "other.sqlite", credentials=credentials_for(pki, "coordinator"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="--health-port: cannot listen"):
            start("127.0.0.1:0", tmp_path / "third.sqlite", credentials=credentials_for(pki, "coordinator"),
                  health_address=f"127.0.0.1:{port}", audit_key=tmp_path / "log" / "audit-signing.key")


def test_database_errors_are_counted(coordinator):
    from sqlalchemy.exc import DBAPIError

    from server.metrics import STORE_ERRORS

    def errors() -> float:
        return sum(s.value for m in STORE_ERRORS.collect() for s in m.samples if s.name.endswith("_total"))

    before = errors()
    with pytest.raises(DBAPIError), coordinator.coordinator.store.read() as conn:
        conn.exec_driver_sql("select * from no_such_table")
    assert errors() == before + 1
