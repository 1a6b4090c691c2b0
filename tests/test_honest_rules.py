"""Honest rules on real processes: a fact from a department that is not in
the project, or has sent no upload, is unknown, and a rule that needs it does
not fire. The operator is told which rules cannot fire, and why, when the
project is created and in each run's report."""
from __future__ import annotations

import subprocess

import pandas as pd

from agents.client import Agent
from agents.config import load_config
from agents.refs import RefCipher, load_key
from procs import FEDLINK

PILOT = ("population", "civil_affairs", "medical_insurance")


def _upload(configs, department: str) -> None:
    with Agent(load_config(configs[department]), show_progress=False) as agent:
        agent.upload()


def _run(operator, project: str) -> tuple[str, dict]:
    run = operator.start_run(project)
    assert operator.watch(run) == "done"
    return run, operator.report(run)


def _flagged(configs, departments, run: str, scenario) -> pd.DataFrame:
    """Every department's flags of the run, as the persons of the scenario's truth."""
    rows = []
    for d in departments:
        with Agent(load_config(configs[d]), show_progress=False) as agent:
            c = agent.config
            cipher = RefCipher(load_key(c.ref_key_file), c.project, d)
            rows += [(d, cipher.decrypt(f.ref), f.need) for f in agent.pull_flags(run)]
    flags = pd.DataFrame(rows, columns=["department", "record_id", "need"])
    truth = pd.read_csv(scenario / "truth.csv", dtype=str)
    return flags.merge(truth, on=["department", "record_id"], how="left")


def _true_persons(scenario, need: str) -> set[str]:
    needs = pd.read_csv(scenario / "needs.csv", dtype=str)
    return set(needs.loc[needs["need"] == need, "person_id"])


def _school_age_children(configs) -> int:
    with Agent(load_config(configs["population"]), show_progress=False) as agent:
        prepared = agent.prepare(agent.project())
    return sum(i["compulsory_school_age"] for b in prepared.batches for i in b.indicators)


def test_a_pilot_without_education_flags_no_child_and_create_says_why(coordinator, operator, pki, agent_config,
                                                                      scenario, tmp_path):
    config = tmp_path / "pilot.toml"
    config.write_text('project_id = "pilot"\nreference_date = "2025-06-30"\n'
                      f"departments = {list(PILOT)!r}\n".replace("'", '"'), encoding="utf-8")
    done = subprocess.run([*FEDLINK, "project", "create", str(config), "--coordinator", coordinator.address,
                           "--pki", str(pki)], capture_output=True, text=True, timeout=120)
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, said
    assert "rule school_age_not_enrolled (school dropout risk) cannot fire: education is not in the project" in said
    assert "rule recent_job_loss_near_line (income shock) cannot fire: human_resources is not in the project" in said
    assert "catastrophic_medical_costs" not in said  # it reads human_resources too, but fires on civil affairs

    configs = {d: agent_config(d) for d in PILOT}
    for d in PILOT:
        _upload(configs, d)
    run, report = _run(operator, "pilot")
    flagged = _flagged(configs, PILOT, run, scenario)
    # The old reading took "no education department" for "not on the school roll": every school-age child.
    assert _school_age_children(configs) > 20
    assert "school_dropout_risk" not in set(flagged["need"])
    assert {r["rule"] for r in report["idle_rules"]} >= {"school_age_not_enrolled", "absent_pupil_low_income"}
    # What the pilot can see, it still finds.
    assert set(flagged.loc[flagged["need"] == "medical_hardship", "person_id"]) & _true_persons(scenario,
                                                                                               "medical_hardship")


def test_education_in_the_project_but_not_uploaded_is_unknown_until_it_uploads(operator, project, agent_config,
                                                                              scenario):
    configs = {d: agent_config(d) for d in PILOT + ("education",)}
    for d in PILOT:
        _upload(configs, d)
    run, report = _run(operator, "pilot")
    assert "school_dropout_risk" not in set(_flagged(configs, PILOT, run, scenario)["need"])
    [idle] = [r for r in report["idle_rules"] if r["rule"] == "school_age_not_enrolled"]
    assert idle["explanation"].endswith("education has no current upload")

    _upload(configs, "education")
    run, report = _run(operator, "pilot")
    assert "school_age_not_enrolled" not in {r["rule"] for r in report["idle_rules"]}
    flagged = _flagged(configs, PILOT + ("education",), run, scenario)
    school = set(flagged.loc[flagged["need"] == "school_dropout_risk", "person_id"])
    assert school == _true_persons(scenario, "school_dropout_risk")
