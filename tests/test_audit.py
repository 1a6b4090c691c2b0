"""The audit log: tamper-evident, provable, and checked by every agent."""
from __future__ import annotations

import json

import grpc
import pytest

from dbutil import copy_database, dbapi

from agents.client import Agent
from agents.config import load_config
from fedlink import merkle
from fedlink.audit import AuditError, event_leaf, load_log_key, vkey_path
from fedlink.checkpoint import open_checkpoint
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


def log_key(coordinator):
    return load_log_key(vkey_path(coordinator.audit_key))


def checkpoint_of(officer, coordinator):
    return open_checkpoint(officer.checkpoint().checkpoint, log_key(coordinator))[0]


def test_coordinator_signs_checkpoints_with_its_audit_key_and_the_log_verifies(busy_log, officer, tmp_path):
    note = officer.export(tmp_path / "export")
    verified = verify_export(tmp_path / "export", log_key(busy_log))
    assert verified.checkpoint.size > 8 and str(verified.note) == note
    assert verified.checkpoint.origin == "localhost/fedlink-audit"


def _edit_export(folder, edit):
    """Apply ``edit`` to the exported events as {seq: body} and write them back in order."""
    path = folder / "events.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()]
    bodies = edit({e["seq"]: e["body"] for e in events})
    path.write_text("".join(json.dumps({"seq": seq, "body": body}) + "\n" for seq, body in sorted(bodies.items())))


def _tamper(tamper):
    def edit(bodies):
        body = bodies[4]
        if tamper == "edit":
            edited = json.loads(body)
            edited["actor"] = "operator:someone-else"
            bodies[4] = json.dumps(edited, sort_keys=True, separators=(",", ":"))
        elif tamper == "delete":
            del bodies[4]
        elif tamper == "reorder":
            bodies[4], bodies[6] = bodies[6], body
        else:
            shifted = {seq + 1 if seq >= 4 else seq: b for seq, b in bodies.items()}
            forged = json.loads(body)
            forged["kind"] = "forged"
            shifted[4] = json.dumps(forged, sort_keys=True, separators=(",", ":"))
            return shifted
        return bodies
    return edit


@pytest.mark.parametrize("tamper, named", [
    ("edit", "event 4 does not match"),
    ("delete", "event 4 is missing"),
    ("reorder", "event 4 carries sequence number 6"),
    ("insert", "an event was inserted at position 4"),
])
def test_tampering_with_an_exported_event_is_detected_and_named(busy_log, officer, tmp_path, tamper, named):
    officer.export(tmp_path / "export")
    verify_export(tmp_path / "export", log_key(busy_log))
    _edit_export(tmp_path / "export", _tamper(tamper))
    with pytest.raises(AuditError) as e:
        verify_export(tmp_path / "export", log_key(busy_log))
    assert named in str(e.value)


def test_editing_the_last_event_is_caught_by_the_signed_checkpoint(busy_log, officer, tmp_path):
    officer.export(tmp_path / "before")
    last = verify_export(tmp_path / "before", log_key(busy_log)).checkpoint.size - 1
    export = tmp_path / "before" / "events.jsonl"
    lines = export.read_text().splitlines()
    event = json.loads(lines[last])
    body = json.loads(event["body"])
    body["actor"] = "agent:nobody"
    event["body"] = json.dumps(body, sort_keys=True, separators=(",", ":"))
    lines[last] = json.dumps(event)
    export.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditError, match=f"event {last}"):
        verify_export(tmp_path / "before", log_key(busy_log))


def test_served_proofs_verify_with_the_rfc_verifier(busy_log, officer):
    head = checkpoint_of(officer, busy_log)
    events = officer.events(end=head.size)
    for seq, body in events[: head.size]:
        proof = officer.inclusion_proof(seq, head.size)
        merkle.verify_inclusion(event_leaf(body), seq, head.size, proof, head.root)
    stub = officer.stub
    from fedlink.v1 import coordinator_pb2 as pb

    now = checkpoint_of(officer, busy_log)
    assert now.size > head.size  # the officer's reads were logged in between
    proof = list(stub.GetConsistencyProof(pb.GetConsistencyProofRequest(old_size=head.size,
                                                                         new_size=now.size)).hashes)
    merkle.verify_consistency(head.size, now.size, head.root, now.root, proof)
    tree = merkle.MerkleTree.from_leaf_hashes([event_leaf(b) for _, b in events[:head.size]])
    assert tree.root(head.size) == head.root


def _forget_signed(coordinator):
    """What an operator with the coordinator's files could do to get past its self-check."""
    coordinator.audit_key.with_suffix(".checkpoint").unlink()
    coordinator.audit_key.with_suffix(".leaves").unlink()


def test_agent_refuses_a_coordinator_that_rewrote_history(pki, tmp_path, agent_config, coordinator, operator,
                                                          project):
    from fedlink.pki import credentials_for
    from server.serve import start

    config = agent_config("housing", batch_size=100)
    with Agent(load_config(config), show_progress=False) as agent:
        agent.upload()  # cosigns the checkpoints it saw
    # The coordinator's operator rewrites an old event, removes the coordinator's own record and restarts.
    coordinator.stop(grace=1)
    with dbapi(coordinator.database) as db:
        body = json.loads(db.execute("select body from audit_events where seq = 1").fetchone()[0])
        body["actor"] = "operator:nobody"
        db.execute("update audit_events set body = ? where seq = 1",
                   (json.dumps(body, sort_keys=True, separators=(",", ":")),))
        rows = db.execute("select seq, body from audit_events where seq >= 2 order by seq").fetchall()
        prev = event_leaf(json.dumps(body, sort_keys=True, separators=(",", ":"))).hex()
        for seq, text in rows:  # re-chained with valid hashes: only a witness's memory tells
            event = json.loads(text)
            event["prev"] = prev
            text = json.dumps(event, sort_keys=True, separators=(",", ":"))
            db.execute("update audit_events set body = ? where seq = ?", (text, seq))
            prev = event_leaf(text).hex()
    _forget_signed(coordinator)
    again = start(f"127.0.0.1:{coordinator.port}", coordinator.database,
                  credentials=credentials_for(pki, "coordinator"), audit_key=coordinator.audit_key)
    try:
        with Agent(load_config(config), show_progress=False) as agent:
            with pytest.raises(AuditError, match="not consistent with the checkpoint this party cosigned"):
                agent.pull_flags()
    finally:
        again.stop(grace=1)


def test_agent_refuses_a_split_view(pki, tmp_path, agent_config, coordinator, operator, project):
    """A second coordinator with the same key but another log: shown to one agent, caught."""
    import shutil

    from fedlink.pki import credentials_for
    from server.serve import start

    config = agent_config("housing", batch_size=100)
    with Agent(load_config(config), show_progress=False) as agent:
        agent.upload()
    fork_db = copy_database(coordinator.database, tmp_path, "fork")
    with dbapi(fork_db) as db:  # the fork shows a log where the agent's upload never happened
        first = db.execute("select min(seq) from audit_events where kind = 'upload.begin'").fetchone()[0]
        db.execute("delete from audit_events where seq >= ?", (first,))
    fork_key = tmp_path / "fork-log" / "audit-signing.key"
    fork_key.parent.mkdir()
    shutil.copy(coordinator.audit_key, fork_key)
    fork = start("127.0.0.1:0", fork_db, credentials=credentials_for(pki, "coordinator"), audit_key=fork_key,
                 witnesses=pki / "coordinator" / "witnesses.toml")
    try:
        text = config.read_text().replace(coordinator.address, f"127.0.0.1:{fork.port}")
        config.write_text(text)
        with Agent(load_config(config), show_progress=False) as agent:
            with pytest.raises(AuditError, match="rollback"):
                agent.witness()
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
    # Witnessing is logged once per burst (its repeats are counted when the burst's window closes).
    step(lambda: agent.witness(), ["audit.read", "audit.cosign"])  # GetCheckpoint, AddCosignature
    step(lambda: agent.witness(), ["audit.read"])  # GetConsistencyProof from the checkpoint cosigned first
    step(lambda: agent.witness(), [])
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
    step(lambda: officer.checkpoint(), ["audit.read"])
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
