"""Uploads: exactly once, resumable, and refused clearly when wrong."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import grpc
import pytest
from sqlalchemy import func, select

from agents.client import Agent
from agents.config import load_config
from agents.encoding import key_check
from agents.secret import new_secret
from fedlink.v1 import coordinator_pb2 as pb
from server import store as t


def stored_records(coordinator, department: str | None = None) -> int:
    q = select(func.count()).select_from(t.records.join(t.uploads, t.uploads.c.upload_id == t.records.c.upload_id))
    if department:
        q = q.where(t.uploads.c.department == department)
    with coordinator.coordinator.store.read() as conn:
        return conn.execute(q).scalar()


def begin(agent: Agent, prepared, secret: bytes | None = None) -> pb.UploadSession:
    return agent.stub.BeginUpload(pb.BeginUploadRequest(
        project_id=agent.config.project, schema_digest=prepared.schema_digest,
        key_check=key_check(secret or agent.config.secret(), agent.config.project),
        upload_digest=prepared.digest, record_count=prepared.record_count, batch_count=len(prepared.batches)),
        timeout=10)


def test_batch_sent_twice_is_stored_once(project, agent_config, coordinator):
    with Agent(load_config(agent_config("housing", batch_size=50)), show_progress=False) as agent:
        prepared = agent.prepare(agent.project())
        session = begin(agent, prepared)
        first = prepared.batches[0]
        acks = list(agent.stub.UploadBatches(agent._batches(session.upload_id, [first, first, prepared.batches[1]])))
        assert [(a.seq, a.stored, a.duplicate) for a in acks] == [
            (0, len(first), False), (0, 0, True), (1, len(prepared.batches[1]), False)]
        # Sending it again in a later stream, after a "reconnect", adds nothing either.
        again = begin(agent, prepared)
        assert again.upload_id == session.upload_id and sorted(again.stored_batches) == [0, 1]
        list(agent.stub.UploadBatches(agent._batches(session.upload_id, [first])))
        assert stored_records(coordinator) == len(first) + len(prepared.batches[1])
        summary = agent.upload(agent.project(), prepared)
    assert summary.committed and stored_records(coordinator) == prepared.record_count


def test_upload_killed_mid_stream_resumes_exactly_once(project, agent_config, coordinator, tmp_path, monkeypatch):
    config = agent_config("population", batch_size=1)
    total = len(load_config(config).extract.read_text(encoding="utf-8").splitlines()) - 1
    # The coordinator stops before batch total//4 (server/faults.py): the kill lands after exactly the
    # batches before it are stored, however fast the agent sends and the store commits.
    cut, reached = total // 4, tmp_path / "reached"
    monkeypatch.setenv("FEDLINK_FAULT_PAUSE", f"upload.batch.{cut}")
    monkeypatch.setenv("FEDLINK_FAULT_PAUSE_ONCE", "1")
    monkeypatch.setenv("FEDLINK_FAULT_PAUSE_S", "3")
    monkeypatch.setenv("FEDLINK_FAULT_FILE", str(reached))
    cmd = [sys.executable, "-m", "fedlink.cli", "agent", "upload", "--config", str(config), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and not (reached.exists() and stored_records(coordinator) >= cut):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = stored_records(coordinator)
    assert at_kill == cut, f"the kill should land at batch {cut} (stored {at_kill} of {total})"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert stored_records(coordinator) == total
    with coordinator.coordinator.store.read() as conn:
        refs = conn.execute(select(t.records.c.ref)).scalars().all()
        states = conn.execute(select(t.uploads.c.state)).scalars().all()
    assert len(refs) == len(set(refs)) == total
    assert states == ["committed"]


def test_department_with_another_secret_is_refused(project, agent_config, coordinator, tmp_path):
    with Agent(load_config(agent_config("civil_affairs")), show_progress=False) as agent:
        agent.upload()
    other = tmp_path / "other.secret"
    new_secret(other)
    with Agent(load_config(agent_config("education", secret=other)), show_progress=False) as agent:
        with pytest.raises(grpc.RpcError) as e:
            agent.upload()
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "different project secret" in e.value.details()
    assert stored_records(coordinator, "education") == 0
    assert stored_records(coordinator, "civil_affairs") > 0


def test_filter_of_wrong_length_is_refused_and_earlier_batches_kept(project, agent_config, coordinator):
    from agents.prepare import Batch
    from fedlink.wire import batch_digest

    with Agent(load_config(agent_config("housing", batch_size=40)), show_progress=False) as agent:
        prepared = agent.prepare(agent.project())
        session = begin(agent, prepared)
        good, bad = prepared.batches[0], prepared.batches[1]
        clks = [bad.clks[0][:64]] + bad.clks[1:]
        broken = Batch(bad.seq, bad.refs, clks, bad.indicators, batch_digest(zip(bad.refs, clks, bad.indicators)))
        with pytest.raises(grpc.RpcError) as e:
            list(agent.stub.UploadBatches(agent._batches(session.upload_id, [good, broken])))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch 1, record 0: filter is 64 bytes" in e.value.details()
    assert stored_records(coordinator) == len(good)


def test_undeclared_indicator_is_refused(project, agent_config, coordinator):
    from agents.prepare import Batch
    from fedlink.wire import batch_digest

    with Agent(load_config(agent_config("housing", batch_size=40)), show_progress=False) as agent:
        prepared = agent.prepare(agent.project())
        session = begin(agent, prepared)
        b = prepared.batches[0]
        ind = [dict(i, monthly_wage_yuan=1) for i in b.indicators]
        sneaky = Batch(0, b.refs, b.clks, ind, batch_digest(zip(b.refs, b.clks, ind)))
        with pytest.raises(grpc.RpcError) as e:
            list(agent.stub.UploadBatches(agent._batches(session.upload_id, [sneaky])))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "monthly_wage_yuan" in e.value.details() and "not declared" in e.value.details()
    assert stored_records(coordinator) == 0


def test_batch_with_changed_content_is_refused(project, agent_config, coordinator):
    from agents.prepare import Batch
    from fedlink.wire import batch_digest

    with Agent(load_config(agent_config("housing", batch_size=40)), show_progress=False) as agent:
        prepared = agent.prepare(agent.project())
        session = begin(agent, prepared)
        b = prepared.batches[0]
        list(agent.stub.UploadBatches(agent._batches(session.upload_id, [b])))
        refs = b.refs[:-1]
        changed = Batch(0, refs, b.clks[:-1], b.indicators[:-1], batch_digest(zip(refs, b.clks, b.indicators)))
        with pytest.raises(grpc.RpcError) as e:
            list(agent.stub.UploadBatches(agent._batches(session.upload_id, [changed])))
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert stored_records(coordinator) == len(b)


def test_commit_refuses_an_incomplete_upload(project, agent_config, coordinator):
    with Agent(load_config(agent_config("housing", batch_size=40)), show_progress=False) as agent:
        prepared = agent.prepare(agent.project())
        session = begin(agent, prepared)
        list(agent.stub.UploadBatches(agent._batches(session.upload_id, prepared.batches[:1])))
        with pytest.raises(grpc.RpcError) as e:
            agent.stub.CommitUpload(pb.CommitUploadRequest(upload_id=session.upload_id), timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "lacks batches [1" in e.value.details()


def test_unknown_project_is_refused_by_the_agent_cli(pki, agent_config, coordinator):
    config = agent_config("housing", project="no-such-project")
    done = subprocess.run([sys.executable, "-m", "fedlink.cli", "agent", "upload", "--config", str(config),
                           "--quiet"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert "NOT_FOUND" in done.stderr and "no-such-project" in done.stderr


@pytest.mark.parametrize("corrupt, message", [
    (lambda lines: [lines[0].replace(",address,", ",addr,")] + lines[1:], "missing column(s) address"),
    (lambda lines: lines[:5] + [lines[5] + ",extra,fields"] + lines[6:], "row 6: "),
    (lambda lines: lines[:3] + [lines[3]] + lines[3:], "row 5: field record_id repeats the value of row 4"),
])
def test_bad_extract_is_refused_before_anything_is_sent(project, agent_config, coordinator, scenario, tmp_path,
                                                        corrupt, message):
    lines = (scenario / "housing.csv").read_text(encoding="utf-8").splitlines()
    bad = tmp_path / "housing.csv"
    bad.write_text("\n".join(corrupt(lines)) + "\n", encoding="utf-8")
    config = agent_config("housing", extract=bad)
    done = subprocess.run([sys.executable, "-m", "fedlink.cli", "agent", "upload", "--config", str(config),
                           "--quiet"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert str(bad) in done.stderr.replace("\n", "") and message in done.stderr.replace("\n", "")
    assert stored_records(coordinator) == 0


def test_an_extract_changed_between_reading_and_sending_is_refused_and_not_committed(
        project, agent_config, coordinator, scenario, tmp_path):
    """The agent holds only the batches' digests after its first reading and makes each
    batch again as it sends it: a file rewritten in between is named, not sent mixed."""
    from agents.prepare import ExtractChanged

    extract = tmp_path / "housing.csv"
    lines = (scenario / "housing.csv").read_text(encoding="utf-8").splitlines()
    extract.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with Agent(load_config(agent_config("housing", extract=extract, batch_size=20)), show_progress=False) as agent:
        prepared = agent.prepare(agent.project())
        assert len(prepared.batches) > 4
        lines[66] = lines[66].replace(lines[66].split(",")[1], "王改名", 1)  # record 65's name: batch 3
        extract.write_text("\n".join(lines) + "\n", encoding="utf-8")
        with pytest.raises(ExtractChanged, match=r"housing\.csv: the extract changed while it was being uploaded "
                                                 r"\(batch 3 differs"):
            agent.upload(agent.project(), prepared)
        with coordinator.coordinator.store.read() as conn:
            assert conn.execute(select(t.uploads.c.state)).scalars().all() == ["open"]
        assert stored_records(coordinator) <= 3 * 20  # none of the changed batch; those before kept to resume
        summary = agent.upload()  # read again, the final file uploads whole
    assert summary.committed and summary.record_count == len(lines) - 1


def test_invalid_utf8_extract_names_the_row(project, agent_config, scenario, tmp_path):
    from agents.extract import ExtractError, read_extract

    raw = (scenario / "housing.csv").read_bytes().split(b"\n")
    raw[3] = raw[3] + b"\xff\xfe"
    bad = tmp_path / "housing.csv"
    bad.write_bytes(b"\n".join(raw))
    with pytest.raises(ExtractError, match=r"row 4: not valid UTF-8"):
        read_extract(bad, "housing")


def test_the_commit_waits_for_the_health_check_of_an_upload_at_the_record_limit():
    """CommitUpload checks the whole upload's encoding health before it writes: 10.7 s for 1.96M
    records here (docs/operations.md), so at the 20M-record limit a fixed 60 s deadline would end
    the call while the coordinator still checks. The agent's deadline leaves that check twice the
    measured time, at every size up to the limit."""
    from agents.client import commit_deadline
    from server.limits import Limits

    measured = 10.7 / 1_959_902
    for records in (1, 2_000_000, Limits().max_records_per_upload):
        assert commit_deadline(records) >= 60 + 2 * measured * records
