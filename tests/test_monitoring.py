"""Runs repeat: flags are new, continuing, in a gradual-exit transition or
resolved against the previous run; reviews flow back and "not in need"
suppresses the same flag; rule changes are audited."""
from __future__ import annotations

import csv
import json

import pandas as pd
import pytest

from dbutil import dbapi

from agents.client import Agent
from agents.config import load_config
from fedlink.rules import default_text
from fedlink.schema import DEPARTMENTS


def rewrite(src, dst, change):
    with open(src, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        change(row)
    with open(dst, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dst


def worklist(config, tmp_path, name) -> pd.DataFrame:
    with Agent(load_config(config), show_progress=False) as agent:
        agent.write_worklist(tmp_path / name)
    return pd.read_csv(tmp_path / name, dtype=str, keep_default_na=False)


@pytest.fixture
def two_runs(scenario, agent_config, coordinator, operator, project, tmp_path):
    configs = {d: agent_config(d) for d in DEPARTMENTS}
    for d in DEPARTMENTS:
        with Agent(load_config(configs[d]), show_progress=False) as agent:
            agent.upload()
    run1 = operator.start_run("pilot", "2025-06-30")
    assert operator.watch(run1) == "done"
    # The disclosure policy sends a pupil's dropout risk to the school, medical hardship to medical insurance.
    first = {d: worklist(configs[d], tmp_path, f"{d}-1.csv") for d in ("medical_insurance", "education")}
    hardship = first["medical_insurance"][first["medical_insurance"]["need"] == "medical_hardship"]
    dropout = first["education"][first["education"]["need"] == "school_dropout_risk"]
    assert len(hardship) >= 1 and len(dropout) >= 2, "the scenario should hold these needs"
    assert set(first["education"]["status"]) == {"new"}

    # Caseworkers review two school-dropout flags.
    with Agent(load_config(configs["education"]), show_progress=False) as agent:
        not_in_need = dropout.iloc[0]
        until = agent.record_outcome(not_in_need["record_id"], "school_dropout_risk", "not_in_need", run1)
        agent.record_outcome(dropout.iloc[1]["record_id"], "school_dropout_risk", "confirmed", run1)
    assert until == "2025-12-27"  # 180 days after the run

    # A month later medical insurance sends a new extract: one patient's costs are covered now.
    patient = hardship.iloc[0]["record_id"]
    new_extract = rewrite(scenario / "medical_insurance.csv", tmp_path / "medical_insurance.csv",
                          lambda r: r.update(out_of_pocket_12m="0", major_illness="0")
                          if r["record_id"] == patient else None)
    config = configs["medical_insurance"]  # same agent, same keys: a new extract
    config.write_text(config.read_text().replace(str((scenario / "medical_insurance.csv").resolve()),
                                                 str(new_extract.resolve())))
    with Agent(load_config(configs["medical_insurance"]), show_progress=False) as agent:
        agent.upload()
    run2 = operator.start_run("pilot", "2025-07-31")
    assert operator.watch(run2) == "done"
    second = {d: worklist(configs[d], tmp_path, f"{d}-2.csv") for d in ("medical_insurance", "education")}
    return run1, run2, first, second, patient, not_in_need["record_id"], dropout.iloc[1]["record_id"]


def test_second_run_marks_new_continuing_transition_and_suppressed(two_runs, coordinator):
    run1, run2, first, second, patient, suppressed, confirmed = two_runs
    med = second["medical_insurance"].set_index(["record_id", "need"])
    row = med.loc[(patient, "medical_hardship")]
    assert row["status"] == "transition" and row["transition_until"] == "2026-01-31"
    assert "gradual exit" in row["explanation"]
    others = med.drop(index=(patient, "medical_hardship"))
    assert set(others["status"]) <= {"continuing", "new"}
    school = second["education"]
    dropout = school[school["need"] == "school_dropout_risk"]
    assert suppressed not in set(dropout["record_id"])
    assert dropout.set_index("record_id").loc[confirmed, "status"] == "continuing"
    assert dropout.set_index("record_id").loc[confirmed, "since"] == "2025-06-30"


def test_the_report_carries_review_feedback_and_statuses(two_runs, operator):
    run1, run2, *_ = two_runs
    report = operator.report(run2)
    keys = {c["key"] for c in report["outcomes_per_rule"]}
    assert {"school_age_not_enrolled/not_in_need", "school_age_not_enrolled/confirmed"} <= keys
    assert all(c["suppressed"] for c in report["outcomes_per_rule"])  # one review each: under k
    statuses = {c["key"] for c in report["flags_per_status"]}
    assert {"continuing", "transition"} <= statuses


def test_a_transition_ends_resolved(two_runs, operator, coordinator):
    run1, run2, first, second, patient, *_ = two_runs
    run3 = operator.start_run("pilot", "2026-02-28")
    assert operator.watch(run3) == "done"
    with dbapi(coordinator.database) as db:
        rows = db.execute("select f.status from flags f join records r on r.id = f.record_id "
                          "where f.run_id = ? and f.need = 'medical_hardship' and f.person = -1", (run3,)).fetchall()
    assert ("resolved",) in rows
    # Retention kept the upload the carried-over flags are on (the first run's), and said what it holds.
    assert operator.report(run3)["retention"]["keep_runs"] == 2
    with dbapi(coordinator.database) as db:
        assert db.execute("select count(*) from audit_events where kind = 'retention.failed'").fetchone()[0] == 0


def test_a_threshold_change_is_an_audit_event(operator, project, coordinator, pki):
    from fedlink.officer import Officer

    text = default_text().replace("catastrophic_oop_yuan = 20000", "catastrophic_oop_yuan = 15000")
    text = text.replace('"6201" = 920', '"6201" = 960')
    with Officer.connect(coordinator.address, pki) as officer:
        officer.approve(operator.propose_rules("pilot", text).proposal_id)
    with dbapi(coordinator.database) as db:
        body = db.execute("select body from audit_events where kind = 'rules.update'").fetchone()[0]
    details = json.loads(body)["details"]
    assert details["parameters"] == {"catastrophic_oop_yuan": [20000, 15000]}
    assert details["subsistence_lines"] == {"6201": [920, 960]}
    assert json.loads(body)["actor"] == "officer:officer" and details["proposed_by"] == "operator:operator"


def test_a_new_extract_replaces_the_previous_one(scenario, agent_config, operator, project, coordinator, tmp_path):
    """Over real gRPC: a department's new extract is what the next run uses; records that disappeared are no
    longer linked and their open flags resolve (not into a transition); records in both are not duplicated;
    sending an earlier extract again makes it current again."""
    configs = {d: agent_config(d) for d in ("population", "civil_affairs", "education")}
    uploads = {}
    for d, config in configs.items():
        with Agent(load_config(config), show_progress=False) as agent:
            uploads[d] = agent.upload()
    run1 = operator.start_run("pilot", "2025-06-30")
    assert operator.watch(run1) == "done"
    # Civil affairs receives elderly alone (the disclosure policy): its register loses one of them.
    pop = worklist(configs["civil_affairs"], tmp_path, "civil_affairs-1.csv")
    elderly = pop[pop["need"] == "elderly_alone"]
    assert len(elderly) >= 2, "the scenario should hold old people living alone"
    gone, stays = elderly.iloc[0]["record_id"], elderly.iloc[1]["record_id"]

    # Next month civil affairs no longer holds one of them (moved away).
    full = pd.read_csv(scenario / "civil_affairs.csv", dtype=str, keep_default_na=False)
    new_extract = rewrite(scenario / "civil_affairs.csv", tmp_path / "civil_affairs.csv", lambda r: None)
    pd.read_csv(new_extract, dtype=str, keep_default_na=False).query("record_id != @gone").to_csv(
        new_extract, index=False)
    config = configs["civil_affairs"]
    config.write_text(config.read_text().replace(str((scenario / "civil_affairs.csv").resolve()),
                                                 str(new_extract.resolve())))
    with Agent(load_config(config), show_progress=False) as agent:
        summary = agent.upload()
    assert summary.replaced_upload_id == uploads["civil_affairs"].upload_id
    assert (summary.records_kept, summary.records_added, summary.records_removed) == (len(full) - 1, 0, 1)

    run2 = operator.start_run("pilot", "2025-07-31")
    assert operator.watch(run2) == "done"
    with dbapi(coordinator.database) as db:
        linked = db.execute("select u.upload_id, count(*) from links l join records r on r.id = l.record_id "
                            "join uploads u on u.upload_id = r.upload_id where l.run_id = ? and u.department = "
                            "'civil_affairs' group by u.upload_id", (run2,)).fetchall()
    assert linked == [(summary.upload_id, len(full) - 1)]  # only the new extract, each record once
    second = worklist(configs["civil_affairs"], tmp_path, "civil_affairs-2.csv").set_index(["record_id", "need"])
    row = second.loc[(gone, "elderly_alone")]
    assert row["status"] == "resolved" and "no longer in this department's extract" in row["explanation"]
    assert second.loc[(stays, "elderly_alone"), "status"] == "continuing"
    assert not second.reset_index().duplicated(["record_id", "need"]).any()

    # The old extract sent again is current again, and the record is back.
    config.write_text(config.read_text().replace(str(new_extract.resolve()),
                                                 str((scenario / "civil_affairs.csv").resolve())))
    with Agent(load_config(config), show_progress=False) as agent:
        back = agent.upload()
    assert back.upload_id == uploads["civil_affairs"].upload_id and back.replaced_upload_id == summary.upload_id
    assert (back.records_kept, back.records_added, back.records_removed) == (len(full) - 1, 1, 0)
    run3 = operator.start_run("pilot", "2025-08-31")
    assert operator.watch(run3) == "done"
    # Back in civil affairs' extract, the record is first seen again: its flag rests on the population
    # register's facts, so it is held for a run (a probe looks the same), then delivered as new.
    third = worklist(configs["civil_affairs"], tmp_path, "civil_affairs-3.csv").set_index(["record_id", "need"])
    assert (gone, "elderly_alone") not in third.index
    signals = {p["department"]: p for p in operator.report(run3)["probe_signals"]}
    assert int(signals["civil_affairs"]["records_first_seen"]) == 1
    assert int(signals["civil_affairs"]["flags_held"]) >= 1
    run4 = operator.start_run("pilot", "2025-09-30")
    assert operator.watch(run4) == "done"
    fourth = worklist(configs["civil_affairs"], tmp_path, "civil_affairs-4.csv").set_index(["record_id", "need"])
    assert fourth.loc[(gone, "elderly_alone"), "status"] == "new"
