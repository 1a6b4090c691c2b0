"""Encoding health checks (server.health) on real and broken encodings."""
from __future__ import annotations

import numpy as np
import pytest

from agents.encoding import Encoder, dice
from agents.normalise import normalise_record
from bench.synth import build, render_department
from fedlink.schema import LinkageSchema
from server.health import encoding_health
from server.matching import pack_filters

SCHEMA = LinkageSchema()


@pytest.fixture(scope="module")
def features():
    world = build(3000, 0)
    frame, _ = render_department(world, "population", 0)
    return [normalise_record(r) for r in frame.astype(str).to_dict("records")]


@pytest.fixture(scope="module")
def encoded(features):
    return Encoder(SCHEMA, b"project secret one", "health-test").encode(features)


def test_real_encoding_is_healthy(encoded):
    report = encoding_health(pack_filters(encoded, SCHEMA.filter_bits))
    assert report.healthy, report.warnings
    assert 0.2 < report.fill_rate < 0.8
    assert report.max_duplicates <= report.duplicate_limit
    assert report.records == len(encoded) and report.filter_bits == 1024
    assert report.position_max <= 0.99 and report.position_min >= 0.01
    assert report.to_dict()["healthy"] is True


def test_all_zero_filters_flagged():
    report = encoding_health(np.zeros((2000, 16), dtype=np.uint64))
    assert not report.healthy
    assert report.fill_rate == 0.0 and report.empty_filters == 2000
    assert any("fill rate" in w for w in report.warnings)


def test_duplicated_filter_flagged(encoded):
    filters = pack_filters(encoded, SCHEMA.filter_bits).copy()
    filters[100:130] = filters[7]  # 31 records share one filter
    report = encoding_health(filters)
    assert report.max_duplicates == 31
    assert any("identical filter" in w for w in report.warnings)


def test_constant_bit_flagged(encoded):
    filters = pack_filters(encoded, SCHEMA.filter_bits).copy()
    filters[:, 3] |= np.uint64(1) << np.uint64(63 - 5)  # filter bit 3*64 + 5 set everywhere
    report = encoding_health(filters)
    assert 3 * 64 + 5 in report.constant_positions
    assert any("more than 99%" in w for w in report.warnings)


def test_other_secret_scores_at_chance(features, encoded):
    """The same records under another secret agree no more than independent random filters would."""
    other = Encoder(SCHEMA, b"project secret two", "health-test").encode(features[:500])
    same_input = np.array([dice(a.tobytes(), b.tobytes()) for a, b in zip(encoded[:500], other)])
    fill_a = np.array([np.unpackbits(np.frombuffer(a.tobytes(), np.uint8)).mean() for a in encoded[:500]])
    fill_b = np.array([np.unpackbits(np.frombuffer(b.tobytes(), np.uint8)).mean() for b in other])
    # Two independent filters with fill rates p and q share p*q of their bits: Dice 2pq / (p + q).
    chance = 2 * fill_a * fill_b / (fill_a + fill_b)
    assert abs(same_input.mean() - chance.mean()) < 0.02
    assert same_input.max() < SCHEMA.threshold


def test_uniform_random_filters_are_healthy():
    rng = np.random.default_rng(1)
    filters = rng.integers(0, 2**64, size=(200_000, 16), dtype=np.uint64)
    report = encoding_health(filters)
    assert report.healthy, report.warnings
    assert abs(report.fill_rate - 0.5) < 0.01
    assert report.max_duplicates == 1 and report.distinct_filters == 200_000
    # Per-position counts of uniform bits: chi-square per degree of freedom near 1 - fill.
    assert 0.3 < report.chi2_per_dof < 0.7


# --------------------------------------------------------------------------- at commit, over real gRPC


def _with_filters(prepared, filters_of):
    """The agent's prepared upload with its filters replaced (digests recomputed, as an agent would)."""
    from dataclasses import replace

    from agents.prepare import Batches
    from fedlink.wire import batch_digest, upload_digest

    batches, start = [], 0
    for b in prepared.batches:
        clks = [filters_of(start + i, c) for i, c in enumerate(b.clks)]
        start += len(b)
        rows = zip(b.refs, clks, b.indicators, *([b.households] if b.households else []))
        batches.append(replace(b, clks=clks, digest=batch_digest(rows)))
    return replace(prepared, batches=Batches.held(batches),
                   digest=upload_digest(prepared.schema_digest, [b.digest for b in batches]))


def _upload(agent, filters_of=None):
    from agents.encoding import key_check

    project = agent.project()
    prepared = agent.prepare(project)
    if filters_of is not None:
        prepared = _with_filters(prepared, filters_of)
    return agent._upload_once(project, prepared, key_check(agent.config.secret(), project.project_id)), prepared


def _health_events(pki, address):
    import json

    from fedlink.officer import Officer

    with Officer.connect(address, pki) as officer:
        return [json.loads(body) for _, body in officer.events(kind="upload.health")]


def test_commit_records_health_and_the_report_shows_it(project, operator, agent_config, coordinator, pki):
    from agents.client import Agent
    from agents.config import load_config

    for d in ("population", "civil_affairs"):
        with Agent(load_config(agent_config(d)), show_progress=False) as agent:
            summary, _ = _upload(agent)
        assert summary.committed and list(summary.health_warnings) == []
    events = _health_events(pki, coordinator.address)
    assert [e["department"] for e in events] == ["population", "civil_affairs"]
    figures = events[0]["details"]
    assert figures["accepted"] and 0.2 < figures["fill_rate"] < 0.8 and figures["refusals"] == []
    run_id = operator.start_run("pilot")
    assert operator.watch(run_id) == "done"
    health = operator.report(run_id)["encoding_health"]
    assert [h["department"] for h in health] == ["civil_affairs", "population"]
    assert all(0.2 < h["fill_rate"] < 0.8 and h["warnings"] == [] for h in health)
    assert "records" not in health[0]  # counts stay in the suppressed cells of the report


def test_a_milder_finding_is_a_warning_and_the_upload_commits(project, agent_config):
    from agents.client import Agent
    from agents.config import load_config

    with Agent(load_config(agent_config("population")), show_progress=False) as agent:
        first = {}
        # Eight records share one filter: above the warning limit (5), below the refusal limit (10).
        summary, _ = _upload(agent, lambda i, c: first.setdefault("clk", c) if i < 8 else c)
    assert summary.committed
    assert any("8 records share one identical filter" in w for w in summary.health_warnings)


@pytest.mark.parametrize("broken, says", [
    (lambda i, c: bytes(len(c)), "have no bit set"),
    (lambda i, c: b"\xa5" * len(c), "share one identical filter"),
])
def test_broken_filters_are_refused_at_commit_and_nothing_is_lost(project, operator, agent_config, coordinator,
                                                                  pki, broken, says):
    import grpc

    from agents.client import Agent
    from agents.config import load_config

    config = load_config(agent_config("population"))
    with Agent(config, show_progress=False) as agent:
        good, _ = _upload(agent)
        with pytest.raises(grpc.RpcError) as refused:
            _upload(agent, broken)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        message = refused.value.details()
        assert says in message and "not committed" in message and "upload again" in message
        # The batches stayed: beginning the same upload again finds every one of them.
        from agents.encoding import key_check
        from fedlink.v1 import coordinator_pb2 as pb

        remote = agent.project()
        prepared = _with_filters(agent.prepare(remote), broken)
        session = agent._call(agent.stub.BeginUpload, pb.BeginUploadRequest(
            project_id=remote.project_id, schema_digest=prepared.schema_digest,
            key_check=key_check(config.secret(), remote.project_id), upload_digest=prepared.digest,
            record_count=prepared.record_count, batch_count=len(prepared.batches)))
        assert not session.committed and sorted(session.stored_batches) == [b.seq for b in prepared.batches]
    events = _health_events(pki, coordinator.address)
    assert [e["details"]["accepted"] for e in events] == [True, False]
    assert events[1]["details"]["refusals"] and events[1]["details"]["upload_id"] == session.upload_id
    # The good upload is still the one a run uses.
    run_id = operator.start_run("pilot")
    assert operator.watch(run_id) == "done"
    assert [h["upload_id"] for h in operator.report(run_id)["encoding_health"]] == [good.upload_id]


def test_refusal_thresholds_are_far_from_a_real_encoding(encoded):
    report = encoding_health(pack_filters(encoded, SCHEMA.filter_bits))
    assert report.refusals == []
    assert encoding_health(np.zeros((50, 16), dtype=np.uint64)).refusals
