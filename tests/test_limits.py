"""The coordinator's limits (server/limits.py): explicit, configurable, each
refused with RESOURCE_EXHAUSTED naming the option; the rate limit tells the
caller when to retry and is audited once per burst; nothing is stored."""
from __future__ import annotations

import grpc
import pytest

from agents.client import Agent
from agents.config import load_config
from dbutil import scalar
from fedlink.operator import Operator
from fedlink.schema import Project
from fedlink.v1 import coordinator_pb2 as pb
from server.limits import Limits, RateLimiter


@pytest.fixture
def limited(pki, tmp_path, request):
    """A coordinator with limits, on a database of its own (the `coordinator` fixture's is held by that one)."""
    from dbutil import new_database
    from fedlink.pki import credentials_for
    from server.serve import start

    database = new_database(tmp_path, "limited")
    running = start("127.0.0.1:0", database, credentials=credentials_for(pki, "coordinator"), limits=request.param,
                    audit_key=tmp_path / "log" / "audit-signing.key", witnesses=pki / "coordinator" / "witnesses.toml")
    running.address = f"127.0.0.1:{running.port}"
    running.database = database
    with Operator.connect(running.address, pki) as op:
        op.create_project(Project.default("pilot", reference_date="2025-06-30"))
    yield running
    running.stop(grace=1)


def retarget(config, running):
    text = config.read_text()
    address = text.split('coordinator = "', 1)[1].split('"', 1)[0]
    config.write_text(text.replace(address, running.address))
    return config


@pytest.mark.parametrize("limited", [Limits(calls_per_minute=5)], indirect=True)
def test_calls_over_the_rate_are_refused_with_a_retry_time(limited, pki):
    with Operator.connect(limited.address, pki) as op, Operator.connect(limited.address, pki, "operator") as same:
        codes = []
        for _ in range(8):
            try:
                op.stub.GetProject(pb.GetProjectRequest(project_id="pilot"), timeout=10)
                codes.append("OK")
            except grpc.RpcError as e:
                codes.append(e.code().name)
                error = e
    assert codes[:4] == ["OK"] * 4 and codes[-1] == "RESOURCE_EXHAUSTED"  # 5 tokens, one spent on create
    assert "--max-calls-per-minute" in error.details()
    assert int(dict(error.trailing_metadata())["retry-after-ms"]) > 0
    refused = scalar(limited.database, "select count(*) from audit_events where kind = 'call.refused'")
    assert refused == 1  # one audit event per burst, not one per refused call
    with Operator.connect(limited.address, pki, "officer") as other:  # another identity has its own budget
        other.stub.GetProject(pb.GetProjectRequest(project_id="pilot"), timeout=10)
    del same


def test_the_rate_limiter_refills_evenly():
    limiter = RateLimiter(60)  # one a second
    assert all(limiter.admit("a", now=0.0) == 0 for _ in range(60))
    assert limiter.admit("a", now=0.0) == 1000
    assert limiter.admit("a", now=1.0) == 0 and limiter.admit("b", now=1.0) == 0
    assert RateLimiter(0).admit("a") == 0


@pytest.mark.parametrize("limited", [Limits(max_batch_records=10)], indirect=True)
def test_a_batch_over_the_limit_is_refused_and_not_retried(limited, agent_config):
    config = retarget(agent_config("housing", batch_size=20), limited)
    with Agent(load_config(config), show_progress=False) as agent, pytest.raises(grpc.RpcError) as e:
        agent.upload()
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at most 10 per batch (--max-batch-records)" in e.value.details()
    assert scalar(limited.database, "select count(*) from records") == 0


@pytest.mark.parametrize("limited", [Limits(max_records_per_upload=50)], indirect=True)
def test_an_upload_over_the_records_limit_is_refused(limited, agent_config):
    config = retarget(agent_config("housing"), limited)
    with Agent(load_config(config), show_progress=False) as agent, pytest.raises(grpc.RpcError) as e:
        agent.upload()
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max-records-per-upload" in e.value.details()
    assert scalar(limited.database, "select count(*) from uploads") == 0


@pytest.mark.parametrize("limited", [Limits(max_message_bytes=20 * 1024)], indirect=True)
def test_a_message_over_the_size_limit_is_refused(limited, agent_config):
    config = retarget(agent_config("housing", batch_size=2000), limited)
    with Agent(load_config(config), show_progress=False) as agent, pytest.raises(grpc.RpcError) as e:
        agent.upload()
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert scalar(limited.database, "select count(*) from records") == 0


def test_limits_are_checked():
    with pytest.raises(ValueError, match="max_batch_records"):
        Limits(max_batch_records=0)
    with pytest.raises(ValueError, match="max_records_per_upload"):
        Limits(max_records_per_upload=2**31)
