"""Witnessed checkpoints end to end, against real coordinators: the witness
quorum an agent requires, a log forked for one department caught by the name
of the witness whose view conflicts, and the coordinator checking its own log
against the last checkpoint it signed (edited while stopped and while running).
"""
from __future__ import annotations

import json
import logging
import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agents.client import Agent
from agents.config import load_config
from bench.harness import register_witness
from conftest import REFERENCE_DATE
from dbutil import dbapi, scalar
from fedlink.audit import AuditError, event_leaf, load_log_key, vkey_path
from fedlink.officer import Officer, officer_witness
from fedlink.operator import Operator
from fedlink.schema import Project
from fedlink.witness import Witness, load_witness_key
from fedlink.witnessing import Roster
from procs import FEDLINK, CoordinatorProcess, agent_toml

BAD = 20  # the event the tampering tests touch


def roster_of(pki, path, quorum: int, parties) -> Roster:
    """A project's witnesses file listing the session's witness keys of ``parties``."""
    keys = tuple(load_witness_key(register_witness(pki, p)).verifier() for p in parties)
    roster = Roster(path, quorum, keys)
    roster.write()
    return roster


def officer_witnesses(address, pki, roster, log_key_path, state):
    """The officer (its session key, listed in ``roster``; its state in ``state``) witnesses the log."""
    witness = Witness(load_witness_key(register_witness(pki, "officer")), state / "witness.json")
    with Officer.connect(address, pki) as officer:
        return officer.witnessing(witness, roster, load_log_key(log_key_path)).contact()


# -- the quorum --------------------------------------------------------------------------


@pytest.fixture
def quorum_site(tmp_path, pki, coordinator, operator, project, agent_config):
    """The fixture coordinator, with a project witnesses file of quorum 1 (agents and officer listed)."""
    path = tmp_path / "witnesses.toml"
    roster = roster_of(pki, path, 1, ["agent-housing", "agent-population", "officer"])
    coordinator.coordinator.context.audit_log.roster = Roster.watch(path)

    def config(department):
        written = agent_config(department, batch_size=100)
        written.write_text(written.read_text().replace(str(pki / f"agent-{department}" / "witnesses.toml"),
                                                          str(path)))
        return load_config(written)

    return coordinator, roster, config


def test_an_agent_uploads_only_once_another_witness_vouched_for_its_history(quorum_site, pki, tmp_path):
    coordinator, roster, config = quorum_site
    housing = config("housing")
    with Agent(housing, show_progress=False) as agent:
        with pytest.raises(AuditError) as e:
            agent.upload()
        message = str(e.value)
        assert "no witness quorum" in message and "requires 1 other witness" in message
        assert "agent-population (no cosignature held)" in message and "officer (no cosignature held)" in message
        assert scalar(coordinator.database, "select count(*) from uploads") == 0  # it stopped before uploading

        officer_witnesses(coordinator.address, pki, roster, vkey_path(coordinator.audit_key), tmp_path / "officer")
        agent.upload()  # the officer's cosignature now vouches for the history housing sees
        # Its upload is a completed action: before the next, someone must have seen the log it is in.
        with pytest.raises(AuditError, match=r"officer \(last cosigned size \d+\)"):
            agent.pull_flags()
    with Agent(config("population"), show_progress=False) as other:
        other.witness()  # another department's contact, after housing's upload
    with Agent(housing, show_progress=False) as agent:
        assert agent.require_witnessed() == ["agent-population"]


def test_a_coordinator_withholding_cosignatures_gets_no_agent_to_act(quorum_site, pki, tmp_path):
    coordinator, roster, config = quorum_site
    officer_witnesses(coordinator.address, pki, roster, vkey_path(coordinator.audit_key), tmp_path / "officer")
    assert scalar(coordinator.database, "select count(*) from cosignatures") == 1
    with dbapi(coordinator.database) as db:
        db.execute("delete from cosignatures")  # what a coordinator hiding another party's view would serve
    with Agent(config("housing"), show_progress=False) as agent:
        with pytest.raises(AuditError, match="no witness quorum.*officer \\(no cosignature held\\)"):
            agent.upload()


def test_a_cosignature_by_a_key_not_in_the_witnesses_file_is_refused(quorum_site, pki, tmp_path):
    coordinator, roster, _ = quorum_site
    stranger = officer_witness(tmp_path / "stranger", "stranger")  # a key the project never listed
    with Officer.connect(coordinator.address, pki) as officer:
        witnessing = officer.witnessing(stranger, Roster(roster.path, 0, (stranger.verifier,)),
                                        load_log_key(vkey_path(coordinator.audit_key)))
        with pytest.raises(grpc.RpcError) as e:
            witnessing.contact()
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no cosignature by a witness in" in e.value.details()
    assert scalar(coordinator.database, "select count(*) from cosignatures") == 0


# -- a log forked for one department -------------------------------------------------------


def test_a_log_forked_for_one_department_is_caught_by_the_name_of_the_other_witness(
        tmp_path, pki, database, scenario, secret_file):
    witnesses = tmp_path / "witnesses.toml"
    roster = roster_of(pki, witnesses, 1, ["agent-population", "agent-civil_affairs", "officer"])
    site = CoordinatorProcess(tmp_path, pki, database, witnesses=witnesses,
                              env={"FEDLINK_FAULT_FORK": "civil_affairs:2"})  # civil affairs sees event 2 changed
    try:
        with Operator.connect(site.address, pki) as op:
            op.create_project(Project.default("pilot", reference_date=REFERENCE_DATE))
        officer_witnesses(site.address, pki, roster, vkey_path(site.audit_key), tmp_path / "officer")
        configs = {d: agent_toml(tmp_path, pki, d, site.address, scenario / f"{d}.csv", secret_file,
                                 witnesses=witnesses) for d in ("population", "civil_affairs")}
        upload = [*FEDLINK, "agent", "upload", "--quiet", "--config"]
        done = subprocess.run([*upload, str(configs["population"])], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        forked = subprocess.run([*upload, str(configs["civil_affairs"])], capture_output=True, text=True,
                                timeout=300)
        assert forked.returncode == 4, forked.stderr
        assert "split view: witness agent-population cosigned a checkpoint" in forked.stderr
        assert "Traceback" not in forked.stderr
        assert scalar(database, "select count(*) from uploads where department = 'civil_affairs'") == 0
        # And the other way round: population, at its next step, finds civil affairs' view conflicting.
        with Agent(load_config(configs["population"]), show_progress=False) as agent:
            with pytest.raises(AuditError, match="split view: witness agent-civil_affairs cosigned"):
                agent.pull_flags()
    finally:
        site.stop()


# -- the coordinator checks itself ----------------------------------------------------------


def _compact(event: dict) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def tamper(database, how: str, seq: int = BAD) -> None:
    """Edit the real database as someone with access to it could."""
    with dbapi(database) as db:
        body = db.execute("select body from audit_events where seq = ?", (seq,)).fetchone()[0]
        edited = json.loads(body)
        edited["actor"] = "operator:someone-else"
        if how == "delete":
            db.execute("delete from audit_events where seq = ?", (seq,))
        elif how == "edit":
            db.execute("update audit_events set body = ? where seq = ?", (_compact(edited), seq))
        elif how == "reorder":
            other = db.execute("select body from audit_events where seq = ?", (seq + 1,)).fetchone()[0]
            db.execute("update audit_events set body = ? where seq = ?", (other, seq))
            db.execute("update audit_events set body = ? where seq = ?", (body, seq + 1))
        elif how == "rechain":  # every later event re-chained with valid hashes
            db.execute("update audit_events set body = ? where seq = ?", (_compact(edited), seq))
            prev = event_leaf(_compact(edited)).hex()
            for later, text in db.execute("select seq, body from audit_events where seq > ? order by seq",
                                          (seq,)).fetchall():
                event = json.loads(text)
                event["prev"] = prev
                db.execute("update audit_events set body = ? where seq = ?", (_compact(event), later))
                prev = event_leaf(_compact(event)).hex()


def fill_log(address, pki, tmp_path, scenario, secret_file, log_key) -> None:
    """A project, project reads and an upload: more than BAD + 2 events (an upload's stream of
    batches is one event, so the reads, each an event, make up the number), all covered by the
    checkpoint the upload's last witnessing has the coordinator sign."""
    with Operator.connect(address, pki) as op:
        op.create_project(Project.default("pilot", reference_date=REFERENCE_DATE))
    config = agent_toml(tmp_path, pki, "population", address, scenario / "population.csv", secret_file,
                        batch_size=20, log_key=log_key)
    with Agent(load_config(config), show_progress=False) as agent:
        for _ in range(BAD + 2):
            agent.project()
        agent.upload()


TAMPERING = ["delete", "edit", "reorder", "rechain"]


@pytest.mark.parametrize("how", TAMPERING)
def test_a_log_edited_while_the_coordinator_was_stopped_stops_it_from_starting(
        tmp_path, pki, database, scenario, secret_file, how):
    site = CoordinatorProcess(tmp_path, pki, database)
    fill_log(site.address, pki, tmp_path, scenario, secret_file, vkey_path(site.audit_key))
    assert site.stop() == 0
    assert scalar(database, "select count(*) from audit_events") > BAD + 2
    tamper(database, how)
    with pytest.raises(AssertionError) as refused:
        site.start()
    assert site.proc.returncode == 4
    log = site.log.read_text()
    assert "AUDIT ALARM" in log and f"event {BAD}" in log and "Traceback" not in log
    assert scalar(database, "select count(*) from audit_events where kind = 'audit.alarm'") == 1
    assert f"event {BAD}" in str(refused.value)


@pytest.mark.parametrize("how", TAMPERING)
def test_a_log_edited_while_the_coordinator_runs_is_refused_loudly(
        tmp_path, pki, coordinator, scenario, secret_file, caplog, how):
    fill_log(coordinator.address, pki, tmp_path, scenario, secret_file, vkey_path(coordinator.audit_key))
    with Officer.connect(coordinator.address, pki) as officer:
        officer.checkpoint()  # signed: the coordinator's tree now covers event BAD
        tamper(coordinator.database, how)
        with caplog.at_level(logging.CRITICAL, logger="fedlink.coordinator"):
            with pytest.raises(grpc.RpcError) as e:
                officer.checkpoint()
        assert e.value.code() == grpc.StatusCode.DATA_LOSS
        assert f"event {BAD}" in e.value.details() and "restore the database" in e.value.details()
        assert any("AUDIT ALARM" in r.message and f"event {BAD}" in r.getMessage() for r in caplog.records)
        with pytest.raises(grpc.RpcError) as later:  # nothing more is served, not only checkpoints
            officer.events()
        assert later.value.code() == grpc.StatusCode.DATA_LOSS
    with Operator.connect(coordinator.address, pki) as op:
        with pytest.raises(grpc.RpcError) as write:
            op.create_project(Project.default("other", reference_date=REFERENCE_DATE))
        assert write.value.code() == grpc.StatusCode.DATA_LOSS
    health = health_pb2_grpc.HealthStub(_channel(coordinator, pki))
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
        health_pb2.HealthCheckResponse.NOT_SERVING
    alarms = [json.loads(b) for (b,) in dbapi_rows(coordinator.database,
                                                   "select body from audit_events where kind = 'audit.alarm'")]
    assert len(alarms) == 1 and f"event {BAD}" in alarms[0]["details"]["reason"]


def _channel(coordinator, pki):
    from fedlink.pki import channel_credentials, credentials_for

    return grpc.secure_channel(coordinator.address, channel_credentials(credentials_for(pki, "officer")))


def dbapi_rows(database, sql):
    with dbapi(database) as db:
        return db.execute(sql).fetchall()


def test_the_checkpoint_on_file_is_the_last_one_signed_and_private(coordinator, pki, tmp_path):
    from fedlink.checkpoint import open_checkpoint

    with Officer.connect(coordinator.address, pki) as officer:
        served, _ = open_checkpoint(officer.checkpoint().checkpoint, load_log_key(vkey_path(coordinator.audit_key)))
    on_file = coordinator.audit_key.with_suffix(".checkpoint")
    kept, _ = open_checkpoint(on_file.read_text(), load_log_key(vkey_path(coordinator.audit_key)))
    assert kept == served
    assert on_file.stat().st_mode & 0o777 == 0o600
    assert coordinator.audit_key.with_suffix(".leaves").stat().st_size == 32 * kept.size
