"""The rule pack: each default rule, the regional lines, validation, and the
indicators agents derive for it."""
from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from agents.indicators import IndicatorError, derive
from fedlink.rules import RuleError, default_text, load_rulepack
from fedlink.schema import DEPARTMENTS
from server.pipeline.needs import evaluate

PACK = load_rulepack()


def flags_for(**facts) -> dict[str, int]:
    """Evaluate the default pack on one person; returns need -> tier."""
    present = {f"present:{k.split('.')[0]}" for k in facts if "." in k}
    arrays = {k: np.array([bool(v)]) for k, v in facts.items()}
    arrays.update({p: np.array([True]) for p in present if p not in arrays})
    return {f.need: f.tier for f in evaluate(PACK, arrays, 1)}


@pytest.mark.parametrize("facts, need, tier", [
    ({"medical_insurance.catastrophic_medical_expense": 1, "civil_affairs.below_subsistence_line": 1},
     "medical_hardship", 1),
    ({"medical_insurance.catastrophic_medical_expense": 1, "human_resources.unemployed": 1}, "medical_hardship", 1),
    ({"medical_insurance.major_illness": 1, "civil_affairs.below_subsistence_line": 1}, "medical_hardship", 2),
    ({"human_resources.recent_job_loss": 1, "civil_affairs.near_subsistence_line": 1}, "income_shock", 2),
    ({"population.compulsory_school_age": 1, "present:education": 0}, "school_dropout_risk", 1),  # not on the roll
    ({"population.compulsory_school_age": 1, "education.enrolled": 0}, "school_dropout_risk", 1),
    ({"education.enrolled": 1, "education.chronic_absence": 1, "civil_affairs.dibao": 1}, "school_dropout_risk", 2),
    ({"population.elderly": 1, "population.lives_alone": 1, "civil_affairs.below_subsistence_line": 1},
     "elderly_alone", 2),
    ({"civil_affairs.dibao": 1, "civil_affairs.below_subsistence_line": 1, "housing.multiple_properties": 1},
     "eligibility_review", 3),
    ({"civil_affairs.dibao": 1, "civil_affairs.below_subsistence_line": 0, "present:housing": 1,
      "present:human_resources": 1}, "gradual_exit", 3),
])
def test_each_default_rule_fires(facts, need, tier):
    assert flags_for(**facts).get(need) == tier


@pytest.mark.parametrize("facts, need", [
    ({"medical_insurance.catastrophic_medical_expense": 1}, "medical_hardship"),  # costs, but income unknown
    ({"population.compulsory_school_age": 1, "education.enrolled": 1}, "school_dropout_risk"),
    ({"population.elderly": 1, "population.lives_alone": 0, "civil_affairs.below_subsistence_line": 1},
     "elderly_alone"),
    ({"civil_affairs.dibao": 1, "civil_affairs.below_subsistence_line": 1}, "gradual_exit"),
    ({"civil_affairs.dibao": 1, "civil_affairs.below_subsistence_line": 1}, "eligibility_review"),
])
def test_rules_do_not_fire_without_their_conditions(facts, need):
    assert need not in flags_for(**facts)


def test_one_flag_per_need_at_the_most_urgent_tier_with_reasons():
    arrays = {k: np.array([True]) for k in ("medical_insurance.catastrophic_medical_expense",
                                            "medical_insurance.major_illness", "civil_affairs.below_subsistence_line",
                                            "present:medical_insurance", "present:civil_affairs")}
    [flag] = [f for f in evaluate(PACK, arrays, 1) if f.need == "medical_hardship"]
    assert flag.tier == 1 and flag.rules == ("catastrophic_medical_costs", "major_illness_low_income")
    assert dict(flag.reasons)["catastrophic_medical_costs"] == (
        "medical_insurance.catastrophic_medical_expense", "civil_affairs.below_subsistence_line")


def test_every_need_of_the_design_is_covered():
    assert set(PACK.needs) == {"medical_hardship", "income_shock", "school_dropout_risk", "elderly_alone",
                               "eligibility_review", "gradual_exit"}


@pytest.mark.parametrize("region, line", [
    ("310115", 1510), ("330106", 1149), ("440106", 1165), ("440305", 1165), ("440604", 1037),
    ("441802", 857), ("620102", 920), ("110101", 857), ("", 857),
])
def test_regional_subsistence_lines_with_a_national_floor(region, line):
    assert PACK.line_for(region) == line


def test_income_indicators_use_the_local_line():
    frame = pd.DataFrame({
        "household_monthly_income": ["4000", "4000", "2000", ""], "household_size": ["3", "3", "1", "2"],
        "dibao": ["1", "0", "", "1"], "region_code": ["310101", "620102", "620102", "310101"],
    }, index=[2, 3, 4, 5])
    out = derive("civil_affairs", frame, pd.Series([""] * 4, index=frame.index), PACK, date(2025, 6, 30))
    # 1,333/person: below Shanghai's 1,510; above Lanzhou's 920 but under 1.5x of it (1,380).
    assert out["below_subsistence_line"].tolist() == [1, 0, 0, 0]
    assert out["near_subsistence_line"].tolist() == [0, 1, 0, 0]
    assert out["dibao"].tolist() == [1, 0, 0, 1]


def test_ages_are_taken_at_the_reference_date():
    frame = pd.DataFrame({"household_size": ["1", "3", "1"]}, index=[2, 3, 4])
    births = pd.Series(["1965-07-01", "2015-06-30", ""], index=frame.index)
    out = derive("population", frame, births, PACK, date(2025, 6, 30))
    assert out["elderly"].tolist() == [0, 0, 0]  # 59 until tomorrow
    assert out["compulsory_school_age"].tolist() == [0, 1, 0]
    assert out["lives_alone"].tolist() == [1, 0, 1]


def test_a_bad_amount_names_the_row_and_field():
    frame = pd.DataFrame({"out_of_pocket_12m": ["100", "lots"], "major_illness": ["0", "1"]}, index=[2, 3])
    with pytest.raises(IndicatorError, match=r"row 3: field 'out_of_pocket_12m'"):
        derive("medical_insurance", frame, pd.Series(["", ""], index=frame.index), PACK, date(2025, 6, 30))


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('when = "population.elderly and', 'when = "population.eldrly and'),
     "rule 'elderly_alone_low_income'.when: population has no indicator 'eldrly'"),
    (lambda t: t.replace("tier = 2\nwhen = \"human_resources.recent", "tier = 9\nwhen = \"human_resources.recent"),
     "rule 'recent_job_loss_near_line'.tier: 9 is not 1, 2 or 3"),
    (lambda t: t.replace('tier = 2\nwhen = "human_resources.recent',
                         'tier = 2\nroute = ["civil_affairs"]\nwhen = "human_resources.recent'),
     "rule 'recent_job_loss_near_line'.route: who receives a need's flags is set in "
     "[disclosure.income_shock].recipients"),
    (lambda t: t.replace('recipients = ["human_resources"]', 'recipients = ["tax_bureau"]'),
     "disclosure.income_shock.recipients: unknown department 'tax_bureau'"),
    (lambda t: t.replace('[disclosure.income_shock]\nrecipients = ["human_resources"]', ''),
     "disclosure.income_shock: missing"),
    (lambda t: t.replace('evidence.population = ["absent(education)"]', 'evidence.population = ["housing.multiple_properties"]'),
     "disclosure.school_dropout_risk.evidence.population: 'housing.multiple_properties' is read by no rule"),
    (lambda t: t.replace('evidence.population = ["absent(education)"]', 'evidence.civil_affairs = ["absent(education)"]'),
     "disclosure.school_dropout_risk.evidence.civil_affairs: civil_affairs is not among the recipients"),
    (lambda t: t.replace('evidence.population = ["absent(education)"]', 'evidence.population = ["population.elderly"]'),
     "'population.elderly' is population's own"),
    (lambda t: t.replace('evidence.population = ["absent(education)"]', 'evidence.population = ["absent(education) or education.enrolled"]'),
     "is not one fact"),
    (lambda t: t.replace('[disclosure.gradual_exit]', '[disclosure.gradual_exit]\ndepartments_linked = "yes"'),
     "disclosure.gradual_exit.departments_linked: true or false"),
    (lambda t: t.replace('[disclosure.gradual_exit]',
                         '[disclosure.housing_fraud]\nrecipients = ["housing"]\n[disclosure.gradual_exit]'),
     "disclosure.housing_fraud: no rule finds this need"),
    (lambda t: t.replace("catastrophic_oop_yuan = 20000", "catastrophic_oop_yuan = -5"),
     "parameters.catastrophic_oop_yuan = -5"),
    (lambda t: t.replace('"31" = 1510', '"31" = "high"'), "subsistence_line.31"),
    (lambda t: t.replace("__import__", "") .replace('when = "civil_affairs.dibao and (housing',
                                                    'when = "__import__(\'os\') and (housing'),
     "is not allowed"),
])
def test_a_bad_rule_pack_is_refused_naming_the_rule_and_field(edit, message):
    with pytest.raises(RuleError) as e:
        load_rulepack(edit(default_text()), source="pack.toml")
    assert message in str(e.value)
    assert str(e.value).startswith("pack.toml")


def test_thresholds_are_data():
    text = default_text().replace("catastrophic_oop_yuan = 20000", "catastrophic_oop_yuan = 5000")
    pack = load_rulepack(text)
    frame = pd.DataFrame({"out_of_pocket_12m": ["8000"], "major_illness": ["0"]}, index=[2])
    births = pd.Series([""], index=frame.index)
    assert derive("medical_insurance", frame, births, pack, date(2025, 6, 30))[
        "catastrophic_medical_expense"].tolist() == [1]
    assert derive("medical_insurance", frame, births, PACK, date(2025, 6, 30))[
        "catastrophic_medical_expense"].tolist() == [0]


def test_an_unknown_employment_status_names_the_row():
    frame = pd.DataFrame({"employment_status": ["employed", "astronaut"], "months_since_job_loss": ["", ""],
                          "monthly_wage": ["", ""]}, index=[2, 3])
    with pytest.raises(IndicatorError, match=r"row 3: field 'employment_status': 'astronaut'"):
        derive("human_resources", frame, pd.Series(["", ""], index=frame.index), PACK, date(2025, 6, 30))


# Each rule of the default pack by name, with the facts that make it fire alone.
RULE_CASES = {
    "catastrophic_medical_costs": {"medical_insurance.catastrophic_medical_expense": 1,
                                   "civil_affairs.near_subsistence_line": 1},
    "major_illness_low_income": {"medical_insurance.major_illness": 1, "human_resources.unemployed": 1},
    "recent_job_loss_near_line": {"human_resources.recent_job_loss": 1, "civil_affairs.below_subsistence_line": 1},
    "school_age_not_enrolled": {"population.compulsory_school_age": 1, "education.enrolled": 0},
    "absent_pupil_low_income": {"education.enrolled": 1, "education.chronic_absence": 1,
                                "civil_affairs.below_subsistence_line": 1},
    "elderly_alone_low_income": {"population.elderly": 1, "population.lives_alone": 1,
                                 "medical_insurance.major_illness": 1},
    "allowance_income_above_line": {"civil_affairs.dibao": 1},
    "allowance_with_assets_or_wage": {"civil_affairs.dibao": 1, "civil_affairs.below_subsistence_line": 1,
                                      "human_resources.wage_above_line": 1},
}


def test_every_rule_of_the_pack_is_pinned_by_name():
    assert set(RULE_CASES) == {r.name for r in PACK.rules}
    for name, facts in RULE_CASES.items():
        present = {f"present:{d}" for d in DEPARTMENTS}  # every department uploaded: every fact known
        arrays = {k: np.array([bool(v)]) for k, v in facts.items()} | {p: np.array([True]) for p in present}
        fired = {rule for f in evaluate(PACK, arrays, 1) for rule in f.rules}
        assert name in fired, name


@pytest.mark.parametrize("months, ok", [(2, False), (3, True), (6, True), (7, False)])
def test_the_transition_period_is_three_to_six_months(months, ok):
    text = default_text().replace("transition_months = 6 ", f"transition_months = {months} ")
    if ok:
        assert load_rulepack(text).param("transition_months") == months
    else:
        with pytest.raises(RuleError, match=r"parameters.transition_months = \d: a gradual exit lasts 3 to 6"):
            load_rulepack(text)


def test_a_known_but_undeclared_indicator_is_refused(operator, agent_config, coordinator):
    """A project may declare fewer indicators than a department could derive; the coordinator refuses the rest."""
    import grpc

    from agents.client import Agent
    from agents.config import load_config
    from agents.encoding import key_check
    from agents.prepare import Batch
    from fedlink.schema import Project
    from fedlink.v1 import coordinator_pb2 as pb
    from fedlink.wire import batch_digest

    project = Project.default("pilot", reference_date="2025-06-30")
    narrow = Project(project.project_id, {**project.departments, "population": ("elderly", "lives_alone")},
                     project.schema, project.reference_date)
    operator.create_project(narrow)
    with Agent(load_config(agent_config("population", batch_size=40)), show_progress=False) as agent:
        prepared = agent.prepare(agent.project())
        assert set(prepared.batches[0].indicators[0]) == {"elderly", "lives_alone"}  # the agent sends only those
        session = agent.stub.BeginUpload(pb.BeginUploadRequest(
            project_id="pilot", schema_digest=prepared.schema_digest,
            key_check=key_check(agent.config.secret(), "pilot"),
            upload_digest=prepared.digest, record_count=prepared.record_count, batch_count=len(prepared.batches)))
        b = prepared.batches[0]
        ind = [dict(i, compulsory_school_age=0) for i in b.indicators]
        hh = b.households or [b""] * len(b)
        sneaky = Batch(0, b.refs, b.clks, ind, batch_digest(zip(b.refs, b.clks, ind, hh)), b.households)
        with pytest.raises(grpc.RpcError) as e:
            list(agent.stub.UploadBatches(agent._batches(session.upload_id, [sneaky])))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "['compulsory_school_age'] are not declared for population" in e.value.details()


def test_ages_for_indicators_follow_a_valid_resident_id_over_a_typed_birth_date():
    from agents.prepare import prepare
    from fedlink.schema import Project

    project = Project.default("ages", reference_date="2025-06-30")
    rows = [  # the same boy, born 2019-08-13 (his ID says so, with a correct check character)
        {"record_id": "typo", "name": "杨宇辰", "sex": "男", "birth_date": "2011-08-13",
         "resident_id": "440304201908131997"},
        {"record_id": "bad-id", "name": "杨宇辰", "sex": "男", "birth_date": "2011-08-13",
         "resident_id": "440304201908131998"},  # wrong check character: the typed date is all there is
        {"record_id": "no-id", "name": "王芳", "sex": "女", "birth_date": "1940-01-02", "resident_id": ""},
    ]
    frame = pd.DataFrame(rows).reindex(columns=["record_id", "name", "sex", "birth_date", "resident_id", "address",
                                                "phone", "household_id", "household_size", "region_code"]).fillna("")
    prepared = prepare(frame, "population", project, b"k" * 32, b"r" * 32, batch_size=10)
    ind = prepared.batches[0].indicators
    assert ind[0]["compulsory_school_age"] == 0  # five years old at the reference date
    assert ind[1]["compulsory_school_age"] == 1  # 2011 as typed: thirteen
    assert ind[2]["elderly"] == 1


def test_a_department_without_an_upload_is_unknown_not_absent():
    """absent(education) with no education upload is unknown: the school rule does not fire, whatever the
    population says; with education uploaded and the child not on it, it does."""
    from server.pipeline.needs import evaluate

    school_age = {"present:population": np.array([True]), "population.compulsory_school_age": np.array([True])}
    assert not [f for f in evaluate(PACK, school_age, 1) if f.need == "school_dropout_risk"]
    known = {**school_age, "present:education": np.array([False])}
    [flag] = [f for f in evaluate(PACK, known, 1) if f.need == "school_dropout_risk"]
    assert dict(flag.reasons)["school_age_not_enrolled"] == ("population.compulsory_school_age", "absent:education")


def test_an_unknown_part_of_an_or_does_not_hide_a_known_true_one():
    """Kleene's logic: true or unknown is true; true and unknown is unknown."""
    facts = {"present:medical_insurance": np.array([True, True]), "present:civil_affairs": np.array([True, True]),
             "medical_insurance.catastrophic_medical_expense": np.array([True, True]),
             "civil_affairs.below_subsistence_line": np.array([True, False])}
    # human_resources (unemployed) is not uploaded: the first person still fires on the civil affairs side.
    fired = {f.person for f in evaluate(PACK, facts, 2) if "catastrophic_medical_costs" in f.rules}
    assert fired == {0}
    # The gradual exit reads housing and human_resources through a negation: unknown, so it does not fire.
    exit_facts = {"present:civil_affairs": np.array([True]), "civil_affairs.dibao": np.array([True])}
    assert not [f for f in evaluate(PACK, exit_facts, 1) if f.need == "gradual_exit"]


def test_idle_rules_name_each_rule_that_cannot_fire_and_why():
    from fedlink.rules import NO_UPLOAD, NOT_IN_PROJECT, idle_rules

    pilot = ("population", "civil_affairs", "medical_insurance")
    idle = {i.rule: i for i in idle_rules(PACK, pilot)}
    assert set(idle) == {"school_age_not_enrolled", "absent_pupil_low_income", "recent_job_loss_near_line",
                         "allowance_income_above_line", "allowance_with_assets_or_wage"}
    assert idle["school_age_not_enrolled"].missing == (("education", NOT_IN_PROJECT),)
    assert idle["school_age_not_enrolled"].sentence() == (
        "rule school_age_not_enrolled (school dropout risk) cannot fire: education is not in the project")
    # catastrophic_medical_costs reads human_resources too, but fires on civil affairs alone: not idle.
    assert "catastrophic_medical_costs" not in idle
    uploaded = {i.rule: i for i in idle_rules(PACK, pilot + ("education",), uploaded=pilot)}
    assert uploaded["school_age_not_enrolled"].missing == (("education", NO_UPLOAD),)
    assert not idle_rules(PACK, DEPARTMENTS)
