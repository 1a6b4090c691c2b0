"""Household rules: members linked to one household are evaluated together,
from keyed household tokens that say only which of a department's records
share a household."""
from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from agents.client import Agent
from agents.config import load_config
from agents.households import household_key, household_tokens
from fedlink.rules import RuleError, default_text, load_rulepack
from server.pipeline.needs import apply_households, evaluate, household_labels
from fedlink.schema import DEPARTMENTS
from conftest import log_key_for
from dbutil import new_database, query
from fedlink.audit import vkey_path
from test_privacy import Capture

PACK = load_rulepack()


def test_households_are_the_connected_persons_of_every_register():
    # population: persons 0,1 one household, 2 another; civil affairs: 2 and 3 one household; 4 on no register
    labels = household_labels(6, [(np.array([0, 1, 2, 4]), np.array([7, 7, 8, -1])),
                                  (np.array([2, 3, 5]), np.array([1, 1, 2]))])
    assert labels.tolist() == [0, 0, 2, 2, -1, 5]


def test_a_household_indicator_applies_to_a_member_without_a_record_of_their_own():
    # Person 0: a parent on the civil affairs roll, below the line. Person 1: their child, enrolled and often
    # absent, with no civil affairs record. Person 2: another child, in no household register.
    facts = {
        "present:civil_affairs": np.array([1, 0, 0], bool),
        "civil_affairs.below_subsistence_line": np.array([1, 0, 0], bool),
        "present:education": np.array([0, 1, 1], bool),
        "education.enrolled": np.array([0, 1, 1], bool),
        "education.chronic_absence": np.array([0, 1, 1], bool),
    }
    households = np.array([0, 0, -1])
    seen = apply_households(PACK, facts, households)
    assert seen["civil_affairs.below_subsistence_line"].tolist() == [True, True, False]
    assert seen["household:civil_affairs.below_subsistence_line"].tolist() == [False, True, False]
    needs = {(f.person, f.need): f.rules for f in evaluate(PACK, seen, 3)}
    assert needs[(1, "school_dropout_risk")] == ("absent_pupil_low_income",)
    assert (2, "school_dropout_risk") not in needs
    # Without the household, the child is not seen as living in a low-income household.
    assert (1, "school_dropout_risk") not in {(f.person, f.need) for f in evaluate(PACK, facts, 3)}


def test_a_members_own_record_wins_over_the_household():
    facts = {"present:civil_affairs": np.array([1, 1], bool),
             "civil_affairs.below_subsistence_line": np.array([1, 0], bool)}
    seen = apply_households(PACK, facts, np.array([0, 0]))
    assert seen["civil_affairs.below_subsistence_line"].tolist() == [True, False]


@pytest.mark.parametrize("value, message", [
    ('["housing.multiple_properties"]', "household_indicators[0] = 'housing.multiple_properties': only departments"),
    ('["civil_affairs.rich"]', "household_indicators[0] = 'civil_affairs.rich': civil_affairs has no indicator"),
    ('"civil_affairs.dibao"', "household_indicators must be a list"),
])
def test_household_indicators_are_validated(value, message):
    text = default_text().replace('household_indicators = ["civil_affairs.below_subsistence_line", '
                                  '"civil_affairs.near_subsistence_line",\n                        '
                                  '"civil_affairs.dibao"]', f"household_indicators = {value}")
    with pytest.raises(RuleError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_rulepack(text, source="pack.toml")


def test_tokens_are_keyed_per_department_and_hide_the_household_number():
    ids = pd.Series(["DB20250000017", " db20250000017 ", "", "DB20250000018"])
    ca = household_tokens(ids, household_key(b"k" * 64, "pilot", "civil_affairs"))
    assert ca[0] == ca[1] and ca[2] == b"" and ca[3] != ca[0] and len(ca[0]) == 16
    # Another department, or another department's key, never yields the same token.
    assert household_tokens(ids, household_key(b"k" * 64, "pilot", "population"))[0] != ca[0]
    assert household_tokens(ids, household_key(b"j" * 64, "pilot", "civil_affairs"))[0] != ca[0]
    assert b"DB2025" not in b"".join(ca)


def _rewrite(src, dst, keep):
    with open(src, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(dst, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(r for r in rows if keep(r))
    return dst


def test_a_child_without_a_civil_affairs_record_is_found_through_the_household(
        scenario, agent_config, coordinator, operator, project, tmp_path):
    """Over real gRPC: drop the civil affairs records of every enrolled, often-absent pupil in a low-income
    household; the pupils are still flagged, because their parents' records say the household is poor."""
    truth = pd.read_csv(scenario / "truth.csv", dtype=str, keep_default_na=False)
    needs = pd.read_csv(scenario / "needs.csv", dtype=str, keep_default_na=False)
    edu = pd.read_csv(scenario / "education.csv", dtype=str, keep_default_na=False)
    pupils = edu[(edu["enrolled"] == "1") & (edu["absence_days_term"].replace("", "0").astype(int) >= 20)]
    person_of = truth.set_index(["department", "record_id"])["person_id"]
    pupil_persons = {person_of[("education", r)] for r in pupils["record_id"]}
    at_risk = pupil_persons & set(needs.loc[needs["need"] == "school_dropout_risk", "person_id"])
    ca_truth = truth[truth["department"] == "civil_affairs"]
    dropped = set(ca_truth.loc[ca_truth["person_id"].isin(at_risk), "record_id"])
    assert dropped, "the scenario should hold low-income pupils on the civil affairs roll"
    ca_extract = _rewrite(scenario / "civil_affairs.csv", tmp_path / "civil_affairs.csv",
                          lambda r: r["record_id"] not in dropped)
    configs = {d: agent_config(d, extract=ca_extract if d == "civil_affairs" else None) for d in DEPARTMENTS}
    for d in DEPARTMENTS:
        with Agent(load_config(configs[d]), show_progress=False) as agent:
            agent.upload()
    run = operator.start_run("pilot", "2025-06-30")
    assert operator.watch(run) == "done"
    with Agent(load_config(configs["education"]), show_progress=False) as agent:
        agent.write_worklist(tmp_path / "education.csv", run)
    wl = pd.read_csv(tmp_path / "education.csv", dtype=str, keep_default_na=False)
    flagged = wl[wl["need"] == "school_dropout_risk"]
    found = {person_of[("education", r)] for r in flagged["record_id"]}
    missed = at_risk - found
    assert len(missed) <= max(1, len(at_risk) // 20), f"missed {len(missed)} of {len(at_risk)}"
    household_rows = flagged[flagged["explanation"].str.contains("from a household member's record")]
    assert len(household_rows) >= len(at_risk) - len(missed) - 1


def test_household_tokens_only_where_declared_and_no_household_number_on_the_wire(
        pki, tmp_path, scenario, secret_file):
    from procs import agent_folder
    from fedlink.operator import Operator
    from fedlink.pki import credentials_for
    from fedlink.schema import Project
    from server.serve import start

    capture = Capture()
    db = new_database(tmp_path)
    running = start("127.0.0.1:0", db, credentials=credentials_for(pki, "coordinator"), interceptors=(capture,),
                    audit_key=log_key_for(tmp_path), witnesses=pki / "coordinator" / "witnesses.toml")
    address = f"127.0.0.1:{running.port}"
    try:
        with Operator.connect(address, pki) as op:
            op.create_project(Project.default("pilot", reference_date="2025-06-30"))
        for d in ("population", "civil_affairs", "housing"):
            config = agent_folder(tmp_path / d, d, scenario / f"{d}.csv", address, pki, secret_file,
                                  log_key=vkey_path(log_key_for(tmp_path)))
            with Agent(load_config(config), show_progress=False) as agent:
                agent.upload()
    finally:
        running.stop(grace=2)
    rows = query(db, "select u.department, count(r.household), count(distinct r.household) from records r "
                     "join uploads u on u.upload_id = r.upload_id group by u.department")
    per = {d: (n, distinct) for d, n, distinct in rows}
    assert per["housing"] == (0, 0)  # a department that numbers no household sends no token
    for d in ("population", "civil_affairs"):
        n, distinct = per[d]
        assert n > 0 and distinct < n  # members share a token
    wire = b"\x00".join(capture.messages)
    for d in ("population", "civil_affairs"):
        ids = pd.read_csv(scenario / f"{d}.csv", dtype=str, keep_default_na=False)["household_id"]
        assert not [h for h in set(ids) if h and h.encode() in wire], "a household number crossed the wire"


def test_the_coordinator_refuses_a_household_token_from_a_department_without_households(
        project, agent_config, coordinator):
    """Over real gRPC: a token from housing (which numbers no household) is refused, as is a malformed one."""
    import grpc

    from agents.encoding import key_check
    from agents.prepare import Batch
    from fedlink.v1 import coordinator_pb2 as pb
    from fedlink.wire import batch_digest

    for department, token, message in (("housing", b"h" * 16, "a household token is not accepted from housing"),
                                       ("civil_affairs", b"abc", "a household token is 16 bytes, not 3")):
        with Agent(load_config(agent_config(department, batch_size=40)), show_progress=False) as agent:
            prepared = agent.prepare(agent.project())
            session = agent.stub.BeginUpload(pb.BeginUploadRequest(
                project_id="pilot", schema_digest=prepared.schema_digest,
                key_check=key_check(agent.config.secret(), "pilot"), upload_digest=prepared.digest,
                record_count=prepared.record_count, batch_count=len(prepared.batches)))
            b = prepared.batches[0]
            hh = [token] * len(b)
            forged = Batch(0, b.refs, b.clks, b.indicators, batch_digest(zip(b.refs, b.clks, b.indicators, hh)), hh)
            with pytest.raises(grpc.RpcError) as e:
                list(agent.stub.UploadBatches(agent._batches(session.upload_id, [forged])))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in e.value.details()
