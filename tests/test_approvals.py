"""Dual control against a real coordinator on loopback with mutual TLS: what
widens what anyone learns is only proposed by an operator and applies when an
officer who did not propose it approves; the suppression floor holds even
then; a locked-out key check is reset the same way."""
from __future__ import annotations

import json

import grpc
import pytest

from dbutil import BACKEND, execute, query, scalar

from agents.client import Agent
from agents.config import load_config
from bench.demo import wider_routing
from fedlink.officer import Officer
from fedlink.operator import Operator
from fedlink.rules import default_text
from fedlink.schema import Project

# The attack: a rule on major illness alone, its flags routed to the population register
# with the illness shown by name (the demo proposes the same change).
def to_population(text: str) -> str:
    widened = wider_routing(text)
    assert "evidence.population" in widened and "major_illness_to_population" in widened
    return widened


TO_POPULATION = to_population(default_text())


def refused(call, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as e:
        call()
    assert e.value.code() == code, e.value.details()
    return e.value.details()


def kinds(database) -> list[str]:
    return [k for (k,) in query(database, "select kind from audit_events order by seq")]


def upload(agent_config, *departments, **kw) -> None:
    for d in departments:
        with Agent(load_config(agent_config(d, **kw)), show_progress=False) as agent:
            agent.upload()


def flags_of(agent_config, department: str, run_id: str, rule: str) -> int:
    with Agent(load_config(agent_config(department)), show_progress=False) as agent:
        return sum(1 for f in agent.pull_flags(run_id) if any(r.rule == rule for r in f.reasons))


def run(operator, day: str) -> str:
    run_id = operator.start_run("pilot", day)
    assert operator.watch(run_id) == "done"
    return run_id


def test_an_operator_alone_cannot_widen_disclosure(project, agent_config, coordinator, operator, officer, pki):
    upload(agent_config, "population", "medical_insurance")
    # k = 1 with the rule: below the floor fixed at creation, refused outright.
    widened = TO_POPULATION.replace("suppression_k = 5", "suppression_k = 1")
    assert "floor of 5" in refused(lambda: operator.propose_rules("pilot", widened),
                                   grpc.StatusCode.INVALID_ARGUMENT)
    proposal = operator.propose_rules("pilot", TO_POPULATION, reason="pilot request")
    assert proposal.state == "pending" and proposal.proposed_by == "operator:operator"
    assert [(i.area, i.item, i.widens) for i in proposal.items] == [
        ("rules", "major_illness_to_population", True), ("disclosure", "medical_hardship.population", True),
        ("disclosure", "medical_hardship.population", True)]
    told = " ".join(proposal.newly_disclosed)
    assert "population would receive medical_hardship flags" in told and "medical_insurance.major_illness" in told
    # Nothing changed: the project's pack and the next run are as before.
    assert scalar(coordinator.database, "select rules_toml from projects") == ""
    before = run(operator, "2025-06-30")
    assert flags_of(agent_config, "population", before, "major_illness_to_population") == 0
    # An operator cannot approve, not even with an officer's name in the request.
    with Officer.connect(coordinator.address, pki, "operator") as as_operator:
        refused(lambda: as_operator.approve(proposal.proposal_id), grpc.StatusCode.PERMISSION_DENIED)
    approved = officer.approve(proposal.proposal_id, note="agreed with medical insurance")
    assert approved.state == "approved" and approved.decided_by == "officer:officer"
    after = run(operator, "2025-07-31")
    assert flags_of(agent_config, "population", after, "major_illness_to_population") > 0
    log = kinds(coordinator.database)
    assert log.index("proposal.create") < log.index("proposal.approve") < log.index("rules.update")
    body = json.loads(query(coordinator.database, "select body from audit_events where kind = 'proposal.create'")[0][0])
    assert body["details"]["widens"] and body["details"]["reason"] == "pilot request"


def test_the_floor_holds_even_for_an_approved_proposal(project, coordinator, operator, officer):
    lower = default_text().replace("suppression_k = 5", "suppression_k = 7")
    proposal = operator.propose_rules("pilot", lower)
    # The store is edited so that the pending proposal asks for k = 1: approval still refuses it.
    forged = json.dumps({"rules_toml": default_text().replace("suppression_k = 5", "suppression_k = 1")})
    execute(coordinator.database, "update proposals set change = "
            + ("cast(:c as json)" if BACKEND == "postgresql" else ":c"), c=forged)
    assert "floor of 5" in refused(lambda: officer.approve(proposal.proposal_id), grpc.StatusCode.INVALID_ARGUMENT)
    assert scalar(coordinator.database, "select rules_toml from projects") == ""
    assert scalar(coordinator.database, "select state from proposals") == "pending"
    # A project whose floor is 3 may go down to 3, with an officer's approval, and no further.
    operator.create_project(Project.default("low", suppression_floor=3))
    down = operator.propose_rules("low", default_text().replace("suppression_k = 5", "suppression_k = 3"))
    assert [(i.area, i.before, i.after, i.widens) for i in down.items] == [("suppression_k", "5", "3", True)]
    assert any("3 to 4 people" in line for line in down.newly_disclosed)
    officer.approve(down.proposal_id)
    refused(lambda: operator.propose_rules("low", default_text().replace("suppression_k = 5", "suppression_k = 2")),
            grpc.StatusCode.INVALID_ARGUMENT)
    refused(lambda: operator.create_project(Project.default("none", suppression_floor=1)),
            grpc.StatusCode.INVALID_ARGUMENT)


def test_no_one_decides_on_their_own_proposal(project, coordinator, pki, tmp_path, officer):
    """alice holds an operator and an officer certificate: she proposes, and her officer certificate cannot
    approve it or reject it; another officer can."""
    from fedlink.pki import CA_FOLDER, bundle, request, sign

    for role, folder in (("operator", tmp_path / "alice-op"), ("officer", tmp_path / "alice-off")):
        csr = request(folder, role, name="alice")  # the key ceremony: her request, signed and bundled by the CA
        sign(csr, pki / CA_FOLDER, folder / "alice.pem")
        bundle(folder / "alice.pem", pki / CA_FOLDER, folder)
    with Operator.connect(coordinator.address, tmp_path / "alice-op", "alice") as alice:
        proposal = alice.propose_linkage("pilot", 0.5, False, reason="more links")
    assert {(i.item, i.widens) for i in proposal.items} == {("schema.threshold", True),
                                                            ("schema.auto_threshold", True)}
    with Officer.connect(coordinator.address, tmp_path / "alice-off", "alice") as alice:
        assert "another officer" in refused(lambda: alice.approve(proposal.proposal_id),
                                            grpc.StatusCode.PERMISSION_DENIED)
        refused(lambda: alice.reject(proposal.proposal_id), grpc.StatusCode.PERMISSION_DENIED)
    digest = scalar(coordinator.database, "select schema_digest from projects")
    officer.approve(proposal.proposal_id)
    spec = scalar(coordinator.database, "select spec from projects")
    spec = json.loads(spec) if isinstance(spec, str) else spec
    assert spec["schema"]["threshold"] == 0.5 and spec["schema"]["auto_threshold"] is False
    assert scalar(coordinator.database, "select schema_digest from projects") != digest
    assert "linkage.update" in kinds(coordinator.database)


@pytest.fixture
def console(coordinator, pki):
    """The web console's own certificate (role console, issued by `pki init`)."""
    with Officer.connect(coordinator.address, pki, "console") as client:
        yield client


def test_a_console_decides_for_the_officer_signed_in_to_it_and_dual_control_holds(project, coordinator, operator,
                                                                                 officer, console):
    """The console relays a person's decision (on_behalf_of): the decision is that officer's, with the
    console's certificate as `via`; it cannot be made for an operator, nor for the proposer by name; an
    ordinary officer's certificate relays for no one, and the console's decides nothing of its own."""
    proposal = operator.propose_linkage("pilot", 0.5, False, reason="more links")
    pid = proposal.proposal_id
    assert "only an officer" in refused(lambda: console.approve(pid, on_behalf_of="operator:wang"),
                                        grpc.StatusCode.PERMISSION_DENIED)
    assert "another officer" in refused(lambda: console.approve(pid, on_behalf_of="officer:operator"),
                                        grpc.StatusCode.PERMISSION_DENIED)
    refused(lambda: console.reject(pid, on_behalf_of="officer:no one"), grpc.StatusCode.INVALID_ARGUMENT)
    # An officer's certificate decides as that officer only: naming a colleague is the console's alone.
    for decide in (officer.approve, officer.reject):
        assert "role console" in refused(lambda: decide(pid, on_behalf_of="officer:wang"),
                                         grpc.StatusCode.PERMISSION_DENIED)
    assert "relays the decision" in refused(lambda: console.approve(pid), grpc.StatusCode.PERMISSION_DENIED)
    # An operator's certificate relays nothing: ApproveProposal needs the officer or console role.
    refused(lambda: Officer.approve(operator, pid, on_behalf_of="officer:wang"), grpc.StatusCode.PERMISSION_DENIED)
    assert officer.proposal(pid).state == "pending"
    decided = console.approve(pid, "fine by me", on_behalf_of="officer:wang")
    assert decided.state == "approved" and decided.decided_by == "officer:wang"
    (body,) = [b for (k, b) in query(coordinator.database, "select kind, body from audit_events order by seq")
               if k == "proposal.approve"]
    event = json.loads(body)
    assert event["actor"] == "officer:wang" and event["details"]["via"] == "console:console"
    assert event["details"]["note"] == "fine by me"
    (update,) = [json.loads(b) for (k, b) in query(coordinator.database, "select kind, body from audit_events")
                 if k == "linkage.update"]
    assert update["actor"] == "officer:wang"


def test_rejected_expired_and_superseded_proposals_change_nothing(project, coordinator, operator, officer):
    first = operator.propose_rules("pilot", default_text().replace("= 20000", "= 15000"))
    second = operator.propose_rules("pilot", default_text().replace("= 20000", "= 10000"))
    third = operator.propose_rules("pilot", default_text().replace("= 20000", "= 12000"))
    assert [p.proposal_id for p in officer.proposals("pilot")] == [first.proposal_id, second.proposal_id,
                                                                   third.proposal_id]
    assert officer.reject(first.proposal_id, note="no reason given").state == "rejected"
    refused(lambda: officer.approve(first.proposal_id), grpc.StatusCode.FAILED_PRECONDITION)
    execute(coordinator.database, "update proposals set expires_at = 1 where proposal_id = :p", p=second.proposal_id)
    assert officer.proposal(second.proposal_id).state == "expired"
    refused(lambda: officer.approve(second.proposal_id), grpc.StatusCode.FAILED_PRECONDITION)
    assert scalar(coordinator.database, "select rules_toml from projects") == ""
    # The pack changes under the third proposal: what it shows is not what it would do any more.
    officer.approve(operator.propose_rules("pilot", default_text().replace("= 20000", "= 19000")).proposal_id)
    assert "propose it again" in refused(lambda: officer.approve(third.proposal_id),
                                         grpc.StatusCode.FAILED_PRECONDITION)
    assert officer.proposal(third.proposal_id).state == "superseded"
    assert "19000" in scalar(coordinator.database, "select rules_toml from projects")
    log = kinds(coordinator.database)
    assert {"proposal.reject", "proposal.expire", "proposal.superseded"} <= set(log)


def test_a_wrong_secret_uploaded_first_is_undone_by_an_approved_reset(project, agent_config, coordinator, operator,
                                                                      officer, tmp_path):
    from agents.secret import new_secret

    wrong = new_secret(tmp_path / "wrong.secret")  # a valid secret, but not the project's
    upload(agent_config, "housing", secret=wrong)  # first: it pins the key check of a wrong secret
    with Agent(load_config(agent_config("population")), show_progress=False) as right:
        refused(right.upload, grpc.StatusCode.PERMISSION_DENIED)
        proposal = operator.propose_key_check_reset("pilot", reason="housing used an old secret")
        assert proposal.items[0].before == "pinned by housing"
        refused(right.upload, grpc.StatusCode.PERMISSION_DENIED)  # pending: nothing changed
        officer.approve(proposal.proposal_id)
        assert right.upload().committed
    upload(agent_config, "education")
    with Agent(load_config(agent_config("housing", secret=wrong)), show_progress=False) as stale:
        refused(stale.upload, grpc.StatusCode.PERMISSION_DENIED)
    assert scalar(coordinator.database, "select key_check_by from projects") == "population"
    # The wrong-secret upload is out of use: no run links it with the others.
    states = dict(query(coordinator.database, "select department, state from uploads"))
    assert states == {"housing": "superseded", "population": "committed", "education": "committed"}
    body = json.loads(query(coordinator.database,
                            "select body from audit_events where kind = 'project.key_check_reset'")[0][0])
    assert body["details"]["was_pinned_by"] == "housing" and list(body["details"]["uploads_withdrawn"]) == ["housing"]


def test_the_commands_propose_list_show_and_decide(project, coordinator, pki, tmp_path):
    import subprocess

    from procs import FEDLINK

    def fedlink(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*FEDLINK, *args, "--coordinator", coordinator.address, "--pki", str(pki)],
                              capture_output=True, text=True, timeout=120)

    pack = tmp_path / "pack.toml"
    pack.write_text(TO_POPULATION)
    proposed = fedlink("project", "rules", "pilot", "--rules", str(pack), "--reason", "pilot request")
    assert proposed.returncode == 0, proposed.stderr
    proposal_id = proposed.stdout.strip()
    assert "waits for a privacy officer" in proposed.stderr and "WIDENS" in proposed.stderr
    listed = fedlink("approvals", "list")
    assert proposal_id in listed.stdout and "pending" in listed.stdout
    shown = fedlink("approvals", "show", proposal_id, "--party", "operator")
    assert "who would newly learn what" in shown.stdout and "population would receive" in shown.stdout
    by_operator = fedlink("approvals", "approve", proposal_id, "--party", "operator")
    assert by_operator.returncode == 3 and "PERMISSION_DENIED" in by_operator.stderr
    assert "Traceback" not in by_operator.stderr
    approved = fedlink("approvals", "approve", proposal_id, "--note", "agreed")
    assert approved.returncode == 0 and "in effect" in approved.stderr
    assert "major_illness_to_population" in scalar(coordinator.database, "select rules_toml from projects")


def test_a_proposal_shows_every_change_to_the_pack():
    """The diff an officer reads: a disclosure grant added (a recipient, an evidence kind), a rule
    removed, a parameter, and any section of the pack; narrowing is not widening."""
    from server.domain.changes import rules_diff

    base = default_text()
    routed = to_population(base)
    diff = rules_diff(base, routed)
    items = {(i.area, i.item, i.after): i for i in diff.items}
    assert items["disclosure", "medical_hardship.population", "flag"].widens
    assert items["disclosure", "medical_hardship.population", "medical_insurance.major_illness"].widens
    told = " ".join(diff.newly_disclosed)
    assert "population would receive medical_hardship flags (rule major_illness_to_population" in told
    assert "population would read medical_insurance.major_illness on its medical_hardship flags" in told
    narrowed = rules_diff(routed, base)
    assert {(i.area, i.widens) for i in narrowed.items} == {("rules", False), ("disclosure", False)}
    assert not narrowed.newly_disclosed
    fewer = base.replace("catastrophic_oop_yuan = 20000", "catastrophic_oop_yuan = 30000")
    assert [(i.area, i.item) for i in rules_diff(base, fewer).items] == [("parameters",
                                                                          "parameters.catastrophic_oop_yuan")]


def test_only_the_console_records_a_persons_page_view(project, coordinator, operator, officer, console):
    """RecordView writes a console.view in a person's name: an operator's or officer's certificate may not;
    the console's may, with an OpenID identity only when its subject is that person's name."""
    from fedlink.v1 import coordinator_pb2 as pb

    view = pb.RecordViewRequest(viewer="officer:wang", page="/audit")
    for client in (operator, officer):
        assert "console role" in refused(lambda: client._call(client.stub.RecordView, view),
                                         grpc.StatusCode.PERMISSION_DENIED)
    assert console._call(console.stub.RecordView, view).seq > 0
    refused(lambda: console._call(console.stub.RecordView, pb.RecordViewRequest(
        viewer="officer:wang", page="/audit", oidc="https://login.example.gov li")), grpc.StatusCode.INVALID_ARGUMENT)
    seq = console._call(console.stub.RecordView, pb.RecordViewRequest(
        viewer="officer:wang", page="/audit", oidc="https://login.example.gov wang")).seq
    (body,) = [b for s, b in officer.events(start=seq, end=seq + 1)]
    assert json.loads(body)["details"] == {"viewer": "officer:wang", "page": "/audit",
                                           "oidc": "https://login.example.gov wang"}
    pid = operator.propose_linkage("pilot", 0.5, False, reason="more links").proposal_id
    refused(lambda: officer.approve(pid, oidc="https://login.example.gov officer"), grpc.StatusCode.INVALID_ARGUMENT)
