"""The audit log: tamper-evident, provable, and checked by every agent."""
from __future__ import annotations

import json

import grpc
import pytest

from dbutil import copy_database, dbapi

from agents.client import Agent
from agents.config import load_config
from fedlink import merkle
from fedlink.audit import AuditError, event_leaf
from fedlink.officer import access_report, verify_export
from fedlink.schema import Project


@pytest.fixture
def busy_log(operator, project, agent_config, coordinator):
    """A log with projects, an upload, reads and a refusal in it."""
    for i in range(3):
        operator.create_project(Project.default(f"extra-{i}", departments=("housing", "population")))
    with Agent(load_config(agent_config("housing", batch_size=100)), show_progress=False) as agent:
        agent.upload()
    return coordinator


def public_key(pki):
    return pki / "officer" / "audit-signing.pub"


def test_coordinator_signs_with_the_pki_audit_key_and_the_log_verifies(busy_log, officer, pki, tmp_path):
    head = officer.export(tmp_path / "export")
    assert head.tree_size > 8
    verified = verify_export(tmp_path / "export", public_key(pki), tmp_path / "heads.jsonl")
    assert verified == head
    assert (tmp_path / "heads.jsonl").read_text().count("\n") == 1


def _db(coordinator):
    return dbapi(coordinator.database)


@pytest.mark.parametrize("tamper, named", [
    ("edit", "event 4 does not match"),
    ("delete", "event 4 is missing"),
    ("reorder", "event 4 carries sequence number 6"),
    ("insert", "an event was inserted at position 4"),
])
def test_tampering_with_a_stored_event_is_detected_and_named(busy_log, officer, pki, tmp_path, tamper, named):
    officer.export(tmp_path / "before")
    verify_export(tmp_path / "before", public_key(pki), tmp_path / "heads.jsonl")
    with _db(busy_log) as db:
        body = db.execute("select body from audit_events where seq = 4").fetchone()[0]
        if tamper == "edit":
            edited = json.loads(body)
            edited["actor"] = "operator:someone-else"
            db.execute("update audit_events set body = ? where seq = 4",
                       (json.dumps(edited, sort_keys=True, separators=(",", ":")),))
        elif tamper == "delete":
            db.execute("delete from audit_events where seq = 4")
        elif tamper == "reorder":
            other = db.execute("select body from audit_events where seq = 6").fetchone()[0]
            db.execute("update audit_events set body = ? where seq = 4", (other,))
            db.execute("update audit_events set body = ? where seq = 6", (body,))
        else:
            for (seq,) in db.execute("select seq from audit_events where seq >= 4 order by seq desc").fetchall():
                db.execute("update audit_events set seq = ? where seq = ?", (seq + 1, seq))
            forged = json.loads(body)
            forged["kind"] = "forged"
            db.execute("insert into audit_events (seq, ts, actor, kind, body) values (4, 0, 'x', 'forged', ?)",
                       (json.dumps(forged, sort_keys=True, separators=(",", ":")),))
    officer.export(tmp_path / "after")
    with pytest.raises(AuditError) as e:
        verify_export(tmp_path / "after", public_key(pki), tmp_path / "heads.jsonl")
    assert named in str(e.value)


def test_editing_the_last_event_is_caught_by_the_saved_signed_head(busy_log, officer, pki, tmp_path):
    head = officer.export(tmp_path / "before")
    verify_export(tmp_path / "before", public_key(pki), tmp_path / "heads.jsonl")
    last = head.tree_size - 1
    export = tmp_path / "before" / "events.jsonl"
    lines = export.read_text().splitlines()
    event = json.loads(lines[last])
    body = json.loads(event["body"])
    body["actor"] = "agent:nobody"
    event["body"] = json.dumps(body, sort_keys=True, separators=(",", ":"))
    lines[last] = json.dumps(event)
    export.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditError, match=f"event {last}"):
        verify_export(tmp_path / "before", public_key(pki), tmp_path / "heads.jsonl")


def test_served_proofs_verify_with_the_rfc_verifier(busy_log, officer):
    head = officer.tree_head()
    events = officer.events(end=head.tree_size)
    for seq, body in events[: head.tree_size]:
        proof = officer.inclusion_proof(seq, head.tree_size)
        merkle.verify_inclusion(event_leaf(body), seq, head.tree_size, proof, head.root_hash)
    older = head.tree_size // 2
    stub = officer.stub
    from fedlink.v1 import coordinator_pb2 as pb

    now = officer.tree_head()
    proof = list(stub.GetConsistencyProof(pb.GetConsistencyProofRequest(old_size=head.tree_size,
                                                                         new_size=now.tree_size)).hashes)
    merkle.verify_consistency(head.tree_size, now.tree_size, head.root_hash, now.root_hash, proof)
    tree = merkle.MerkleTree.from_leaf_hashes([event_leaf(b) for _, b in events[:head.tree_size]])
    assert tree.root(older) and tree.root(head.tree_size) == head.root_hash


def test_agent_refuses_a_coordinator_that_rewrote_history(pki, tmp_path, agent_config, coordinator, operator,
                                                          project):
    from fedlink.pki import credentials_for
    from server.serve import start

    config = agent_config("housing", batch_size=100)
    with Agent(load_config(config), show_progress=False) as agent:
        agent.upload()  # saves the tree heads it saw
    # The operator of the coordinator rewrites an old event and restarts.
    coordinator.stop(grace=1)
    with dbapi(coordinator.database) as db:
        body = json.loads(db.execute("select body from audit_events where seq = 1").fetchone()[0])
        body["actor"] = "operator:nobody"
        db.execute("update audit_events set body = ? where seq = 1",
                   (json.dumps(body, sort_keys=True, separators=(",", ":")),))
    again = start(f"127.0.0.1:{coordinator.port}", coordinator.database,
                  credentials=credentials_for(pki, "coordinator"))
    try:
        with Agent(load_config(config), show_progress=False) as agent:
            with pytest.raises(AuditError, match="not consistent with the tree head"):
                agent.pull_flags()
    finally:
        again.stop(grace=1)


def test_agent_refuses_a_split_view(pki, tmp_path, agent_config, coordinator, operator, project):
    """A second coordinator with the same key but another log: shown to one agent, caught."""
    from fedlink.pki import credentials_for
    from server.serve import start

    config = agent_config("housing", batch_size=100)
    with Agent(load_config(config), show_progress=False) as agent:
        agent.upload()
    fork_db = copy_database(coordinator.database, tmp_path, "fork")
    with dbapi(fork_db) as db:  # the fork shows a log where the agent's upload never happened
        first = db.execute("select min(seq) from audit_events where kind = 'upload.begin'").fetchone()[0]
        db.execute("delete from audit_events where seq >= ?", (first,))
    fork = start("127.0.0.1:0", fork_db, credentials=credentials_for(pki, "coordinator"))
    try:
        text = config.read_text().replace(coordinator.address, f"127.0.0.1:{fork.port}")
        config.write_text(text)
        with Agent(load_config(config), show_progress=False) as agent:
            with pytest.raises(AuditError):
                agent.check_log()
    finally:
        fork.stop(grace=1)


def kinds_after(coordinator, before: int) -> list[str]:
    with dbapi(coordinator.database) as db:
        return [k for (k,) in db.execute("select kind from audit_events where seq >= ? order by seq", (before,))]


def log_size(coordinator) -> int:
    with dbapi(coordinator.database) as db:
        return db.execute("select count(*) from audit_events").fetchone()[0]


def test_every_method_leaves_exactly_its_events(pki, agent_config, coordinator, operator, officer):
    from fedlink.v1 import coordinator_pb2 as pb

    def step(call, expected):
        n = log_size(coordinator)
        call()
        coordinator.coordinator.runs.join(30)  # let a run finish writing its events
        assert kinds_after(coordinator, n) == expected, call

    def refused(call, code):
        n = log_size(coordinator)
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == code
        assert kinds_after(coordinator, n) == ["call.refused"]

    step(lambda: operator.create_project(Project.default("p", reference_date="2025-06-30")), ["project.create"])
    refused(lambda: operator.create_project(Project.default("p")), grpc.StatusCode.ALREADY_EXISTS)
    agent = Agent(load_config(agent_config("housing", project="p", batch_size=100)), show_progress=False)
    # A head read is logged once per burst (its repeats are counted when the burst's window closes).
    step(lambda: agent.check_log(), ["audit.read"])  # GetTreeHead
    step(lambda: agent.check_log(), ["audit.read"])  # GetConsistencyProof from the head seen first
    step(lambda: agent.check_log(), [])
    step(lambda: agent.project(), ["project.read"])
    prepared = agent.prepare(agent.project())
    assert len(prepared.batches) > 1
    n = log_size(coordinator)
    agent.upload(agent.project(), prepared)
    # One event for the whole stream of batches, not one per batch.
    assert kinds_after(coordinator, n) == ["project.read", "project.key_check_pinned", "upload.begin",
                                           "upload.batches", "upload.health", "upload.commit"]
    refused(lambda: agent.stub.StartRun(pb.StartRunRequest(project_id="p")), grpc.StatusCode.PERMISSION_DENIED)
    n = log_size(coordinator)
    run_id = operator.start_run("p")
    coordinator.coordinator.runs.wait(run_id)
    assert kinds_after(coordinator, n) == ["run.start", "run.done"]
    step(lambda: list(operator.progress(run_id)), ["run.watch"])
    step(lambda: operator.report(run_id), ["report.read"])
    step(lambda: agent.pull_flags(), ["flags.deliver"])
    refused(lambda: list(agent.stub.PullFlags(pb.PullFlagsRequest(project_id="p", department="population"))),
            grpc.StatusCode.PERMISSION_DENIED)
    from fedlink.rules import default_text

    proposals = []
    step(lambda: proposals.append(operator.propose_rules("p", default_text().replace("= 20000", "= 18000"))),
         ["proposal.create"])
    step(lambda: officer.approve(proposals[0].proposal_id), ["proposal.approve", "rules.update"])
    refused(lambda: operator.propose_rules("p", "not toml ["), grpc.StatusCode.INVALID_ARGUMENT)
    refused(lambda: officer.approve(proposals[0].proposal_id), grpc.StatusCode.FAILED_PRECONDITION)
    refused(lambda: agent.record_outcome("no-such-record", "income_shock", "confirmed", run_id),
            grpc.StatusCode.NOT_FOUND)
    refused(lambda: agent.record_outcome("no-such-record", "income_shock", "maybe", run_id),
            grpc.StatusCode.INVALID_ARGUMENT)
    step(lambda: officer.tree_head(), ["audit.read"])
    step(lambda: officer.events(), ["audit.read"])
    step(lambda: officer.inclusion_proof(0, 2), ["audit.read"])
    refused(lambda: agent.stub.ListAuditEvents(pb.ListAuditEventsRequest()).next(),
            grpc.StatusCode.PERMISSION_DENIED)
    agent.close()


def test_access_report_counts_reads_per_actor(busy_log, officer):
    report = access_report(officer.events())["actors"]
    assert report["agent:housing"]["reads"]["project.read"] >= 1
    assert "officer:officer" not in report or "audit.read:ListAuditEvents" in report["officer:officer"]["reads"]
    again = access_report(officer.events())["actors"]
    assert again["officer:officer"]["reads"]["audit.read:ListAuditEvents"] >= 1
