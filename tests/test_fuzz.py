"""Hostile and malformed input, generated with hypothesis: the agent's CSV and
config readers, and the coordinator's request handling over real gRPC with
mutual TLS. Every input ends in a result or a clear error with the right
status, never a crash (INTERNAL/UNKNOWN) and never a partial write.

The campaigns, their sizes and what they found are in docs/operations.md.
FEDLINK_FUZZ_EXAMPLES scales every campaign (default: the suite's bounded
size, 40; the recorded campaigns ran with 1000)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.client import Agent
from agents.config import AgentConfig, ConfigError, load_config
from agents.encoding import key_check
from agents.extract import ExtractError, read_extract
from dbutil import scalar
from fedlink.pki import channel_credentials, credentials_for
from fedlink.v1 import coordinator_pb2 as pb
from fedlink.v1 import coordinator_pb2_grpc as pb_grpc
from fedlink.wire import batch_digest

EXAMPLES = int(os.environ.get("FEDLINK_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
# What a hostile or broken request may get back: never INTERNAL or UNKNOWN.
CLEAR = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED,
         grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.RESOURCE_EXHAUSTED,
         grpc.StatusCode.UNAUTHENTICATED}

HEADER = ("record_id,name,sex,birth_date,resident_id,address,phone,region_code,household_id,"
          "owned_properties,monthly_wage_yuan,receives_subsistence_allowance")
cells = st.one_of(st.text(max_size=12), st.sampled_from(["", '"', '""', "\r\n", "\n", ",", "\x00", "\ufeff",
                                                        "-1", "99999999999999999999", "1e309", "NaN"]))


# -- the agent's readers ----------------------------------------------------------

@FUZZ
@given(st.one_of(
    st.binary(max_size=2000),
    st.lists(st.lists(cells, min_size=0, max_size=14), max_size=8).map(
        lambda rows: (HEADER + "\n" + "\n".join(",".join(r) for r in rows)).encode("utf-8", "surrogatepass")),
    st.tuples(st.binary(max_size=200), st.binary(max_size=200)).map(
        lambda parts: HEADER.encode() + b"\n" + parts[0] + b"\xff\xfe" + parts[1]),
))
def test_csv_reader_gives_a_frame_or_an_error_naming_the_file(raw):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "housing.csv"
        path.write_bytes(raw)
        try:
            frame = read_extract(path, "housing")
        except ExtractError as e:
            assert str(path) in str(e)
            return
        assert frame["record_id"].str.len().min() > 0 if len(frame) else True
        assert not frame["record_id"].duplicated().any()


toml_values = st.recursive(
    st.one_of(st.booleans(), st.integers(min_value=-2**63, max_value=2**63 - 1), st.text(max_size=20),
              st.floats(allow_nan=False), st.just("")),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)
CONFIG_KEYS = ["department", "project", "coordinator", "extract", "secret_file", "ref_key_file", "state_dir",
               "batch_size", "tls", "insecure", "columns", "sql", "audit_key", "witnesses", "witness_key", "retries",
               "encoding", "sheet", "language", "trust_on_first_use", "max_removed_share", "max_unreadable_share",
               "max_blank_share", "unknown"]


@FUZZ
@given(st.one_of(
    st.binary(max_size=600),
    st.dictionaries(st.sampled_from(CONFIG_KEYS), toml_values, max_size=14),
    st.fixed_dictionaries({"department": st.sampled_from(["housing", "nobody", ""]), "project": st.text(max_size=5),
                           "coordinator": st.just("127.0.0.1:1"), "extract": st.text(max_size=5),
                           "secret_file": st.just("s"), "ref_key_file": st.just("k"),
                           "batch_size": toml_values, "retries": toml_values, "insecure": toml_values,
                           "tls": toml_values, "columns": toml_values, "sql": toml_values}),
    # Past the TLS check (insecure, no [tls]), so the typed keys are what is tested.
    st.fixed_dictionaries({"department": st.just("housing"), "project": st.just("p"),
                           "coordinator": st.just("127.0.0.1:1"), "extract": st.just("e.csv"),
                           "secret_file": st.just("s"), "ref_key_file": st.just("k"), "insecure": st.just(True),
                           "batch_size": st.one_of(st.booleans(), st.integers(-5, 60_000), toml_values),
                           "retries": st.one_of(st.integers(0, 20), st.booleans(), toml_values)}),
))
def test_config_reader_gives_a_config_or_an_error_naming_the_file(content):
    raw = content if isinstance(content, bytes) else _toml(content).encode("utf-8", "surrogatepass")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "agent.toml"
        path.write_bytes(raw)
        try:
            config = load_config(path)
        except ConfigError as e:
            assert str(path) in str(e)
            return
    assert isinstance(config, AgentConfig)
    assert type(config.batch_size) is int and 1 <= config.batch_size <= 50_000
    assert type(config.retries) is int and 0 <= config.retries <= 20
    assert isinstance(config.columns, dict) and isinstance(config.sql, dict)
    assert config.language in ("en", "zh") and all(0 <= s <= 1 for s in (
        config.max_removed_share, config.max_unreadable_share, config.max_blank_share))


def _toml(data: dict) -> str:
    """TOML for generated values: every value inline (tables as { k = v })."""
    import json
    import math

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            return ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"

    return "\n".join(f"{json.dumps(k)} = {value(v)}" for k, v in data.items()) + "\n"


# -- the coordinator's request handling ---------------------------------------------

class Caller:
    """Real gRPC calls with mutual TLS as one party; statuses, not exceptions."""

    def __init__(self, coordinator, pki, party: str):
        self.channel = grpc.secure_channel(coordinator.address,
                                           channel_credentials(credentials_for(pki, party)),
                                           options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
        self.stub = pb_grpc.CoordinatorStub(self.channel)

    def unary(self, name: str, request):
        try:
            return getattr(self.stub, name)(request, timeout=30), grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e, e.code()

    def stream(self, name: str, requests):
        try:
            return list(getattr(self.stub, name)(iter(requests), timeout=30)), grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e, e.code()

    def raw(self, method: str, data: bytes, streaming: bool = False) -> grpc.StatusCode:
        """Bytes that may not even be a protobuf message, as a request."""
        path = f"/fedlink.v1.Coordinator/{method}"
        try:
            if streaming:
                call = self.channel.stream_stream(path, request_serializer=None, response_deserializer=None)
                list(call(iter([data]), timeout=30))
            else:
                call = self.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
                call(data, timeout=30)
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()


def consistent(database) -> None:
    """No partial write: every stored record belongs to a stored batch that
    counted it, and no upload holds more than it declared."""
    assert scalar(database, "select count(*) from records") == scalar(
        database, "select coalesce(sum(record_count), 0) from batches")
    assert scalar(database, "select count(*) from (select b.upload_id from batches b join uploads u on "
                            "u.upload_id = b.upload_id group by b.upload_id, u.record_count "
                            "having sum(b.record_count) > u.record_count) over") == 0
    seqs = scalar(database, "select count(*) from audit_events")
    assert scalar(database, "select coalesce(max(seq), -1) from audit_events") == seqs - 1


@pytest.fixture
def fuzz_site(pki, tmp_path, database, agent_config, coordinator, project):
    config = load_config(agent_config("housing", batch_size=20))
    agent = Agent(config, show_progress=False)
    prepared = agent.prepare(agent.project())
    caller = Caller(coordinator, pki, "agent-housing")
    session, code = caller.unary("BeginUpload", pb.BeginUploadRequest(
        project_id="pilot", schema_digest=prepared.schema_digest, key_check=key_check(config.secret(), "pilot"),
        upload_digest=prepared.digest, record_count=prepared.record_count, batch_count=len(prepared.batches)))
    assert code == grpc.StatusCode.OK
    yield coordinator, caller, agent, prepared, session
    agent.close()
    caller.channel.close()


def test_requests_that_are_not_messages_get_invalid_argument(fuzz_site):
    coordinator, caller, *_ = fuzz_site

    @FUZZ
    @given(st.sampled_from(["BeginUpload", "GetProject", "CommitUpload", "RecordOutcome", "UploadBatches",
                            "PullFlags"]),
           st.one_of(st.binary(max_size=300),
                     # valid framing, invalid UTF-8 in a string field (field 1 of each request)
                     st.binary(min_size=1, max_size=40).map(lambda b: b"\x0a" + bytes([len(b) + 2]) + b"\xff\xfe" + b)))
    def check(method, data):
        code = caller.raw(method, data, streaming=method in ("UploadBatches",))
        assert code in CLEAR | {grpc.StatusCode.OK}, (method, data, code)
        assert code != grpc.StatusCode.OK or method in ("GetProject", "PullFlags", "UploadBatches")
        consistent(coordinator.database)

    check()


u64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1]))
u32 = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**32 - 1]))
ids = st.one_of(st.text(max_size=300), st.sampled_from(["pilot", "", "\x00", "pilot\x00", "x" * 5000]))


def test_begin_upload_with_hostile_fields(fuzz_site):
    coordinator, caller, agent, prepared, _ = fuzz_site

    @FUZZ
    @given(ids, st.one_of(st.just(prepared.schema_digest), st.text(max_size=80)),
           st.one_of(st.just(key_check(agent.config.secret(), "pilot")), st.binary(max_size=64)),
           st.binary(max_size=64), u64, u32)
    def check(project_id, schema_digest, check_value, digest, record_count, batch_count):
        _, code = caller.unary("BeginUpload", pb.BeginUploadRequest(
            project_id=project_id, schema_digest=schema_digest, key_check=check_value, upload_digest=digest,
            record_count=record_count, batch_count=batch_count))
        assert code in CLEAR | {grpc.StatusCode.OK}, code
        consistent(coordinator.database)

    check()


def test_hostile_batches_are_refused_whole(fuzz_site):
    """Into a decoy upload of the same department: the fuzzed batches that are
    valid get stored (whole), the others refused (whole); the department's
    real upload, beside it, is untouched and completes exactly."""
    from agents.prepare import Batch

    coordinator, caller, agent, prepared, _ = fuzz_site
    good = prepared.batches[0]
    session, code = caller.unary("BeginUpload", pb.BeginUploadRequest(
        project_id="pilot", schema_digest=prepared.schema_digest, key_check=key_check(agent.config.secret(), "pilot"),
        upload_digest=b"d" * 32, record_count=100_000, batch_count=500))
    assert code == grpc.StatusCode.OK
    record = st.fixed_dictionaries({
        "ref": st.one_of(st.just(good.refs[0]), st.binary(max_size=300)),
        "clk": st.one_of(st.just(good.clks[0]), st.binary(max_size=300), st.just(good.clks[0] + b"\x00")),
        "indicators": st.one_of(st.just(good.indicators[0]), st.dictionaries(
            st.one_of(st.sampled_from(sorted(good.indicators[0]) or ["x"]), st.text(max_size=10)),
            st.integers(-2**31, 2**31 - 1), max_size=4)),
    })

    @FUZZ
    @given(st.one_of(st.just(session.upload_id), ids), u32, st.lists(record, max_size=30),
           st.booleans(), st.binary(max_size=40))
    def check(upload_id, seq, records, right_digest, other_digest):
        refs = [r["ref"] for r in records]
        clks = [r["clk"] for r in records]
        indicators = [r["indicators"] for r in records]
        digest = batch_digest(zip(refs, clks, indicators)) if right_digest else other_digest
        batch = Batch(seq, refs, clks, indicators, digest)
        before = scalar(coordinator.database, "select count(*) from records")
        result, code = caller.stream("UploadBatches", list(agent._batches(upload_id, [batch])))
        assert code in CLEAR | {grpc.StatusCode.OK}, code
        after = scalar(coordinator.database, "select count(*) from records")
        assert after - before in (0, len(records) if code == grpc.StatusCode.OK else 0)
        consistent(coordinator.database)

    check()
    # The hostile traffic left the real upload intact: it completes exactly.
    summary = agent.upload(agent.project(), prepared)
    assert summary.committed
    assert scalar(coordinator.database, "select count(*) from records r join uploads u on u.upload_id = r.upload_id "
                                        "where u.state = 'committed'") == prepared.record_count


def test_a_batch_replayed_by_another_department_is_refused(fuzz_site, pki, agent_config):
    coordinator, caller, agent, prepared, session = fuzz_site
    list(agent.stub.UploadBatches(agent._batches(session.upload_id, prepared.batches[:1])))
    thief = Caller(coordinator, pki, "agent-education")
    for upload_id in (session.upload_id, ""):
        result, code = thief.stream("UploadBatches", list(agent._batches(upload_id, prepared.batches[:2])))
        assert code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND), code
    assert "belongs to another department" in result.details() or "does not exist" in result.details()
    assert scalar(coordinator.database, "select count(*) from records") == len(prepared.batches[0])
    _, code = thief.unary("CommitUpload", pb.CommitUploadRequest(upload_id=session.upload_id))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    thief.channel.close()


def test_unknown_enum_values_and_names_get_invalid_argument_or_not_found(fuzz_site, pki):
    coordinator, *_ = fuzz_site
    agent = Caller(coordinator, pki, "agent-housing")

    @FUZZ
    @given(st.one_of(st.text(max_size=40), st.sampled_from(["confirmed", "CONFIRMED", "", "\x00"])),
           st.text(max_size=40), ids, st.binary(max_size=64))
    def check(outcome, need, run_id, ref):
        _, code = agent.unary("RecordOutcome", pb.RecordOutcomeRequest(
            project_id="pilot", ref=ref, need=need, outcome=outcome, run_id=run_id))
        assert code in {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}, code
        consistent(coordinator.database)

    check()
    agent.channel.close()
