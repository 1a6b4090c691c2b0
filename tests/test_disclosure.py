"""The probe replayed against a real coordinator and real agents on loopback
with mutual TLS: civil affairs appends 40 rows for people it chose (their
identifiers as the population register writes them, household income 200,
a household of one, on the allowance), uploads, pulls its flags. Everything
the coordinator sends it is captured. With the default disclosure policy it
learns no other department's indicator, the probe shows (probe signals,
audit events, the officer's access report), and the flags it plants in
medical insurance's worklist say they rest on records first seen. A widened
policy, with the probe rows kept, lets the same capture see the leak: the
test can fail."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from dbutil import new_database
from test_privacy import Responses

from agents.client import Agent
from agents.config import load_config
from fedlink.officer import Officer, access_report
from fedlink.rules import NEUTRAL, default_text, load_rulepack
from fedlink.schema import DEPARTMENTS
from server.pipeline.wording import fact

PROBES = 40
# Every field of a delivered flag: a new one must be judged here before it ships.
FLAG_FIELDS = {"ref", "need", "tier", "reasons", "departments_linked", "match_scores", "run_id", "explanation",
               "status", "since", "transition_until", "rests_on_first_seen", "explanation_zh",
               "upload_id"}  # the caller's own upload the run used, which its UploadSummary already named
# The operator's widening the finding describes: illness routed to civil affairs, by name.
WIDENED = default_text().replace('[disclosure.medical_hardship]\nrecipients = ["medical_insurance"]',
                                 '[disclosure.medical_hardship]\nrecipients = ["civil_affairs", "medical_insurance"]\n'
                                 'evidence.civil_affairs = ["medical_insurance.major_illness"]')


def _extract(config, path) -> None:
    text = config.read_text()
    old = next(line for line in text.splitlines() if line.startswith("extract"))
    config.write_text(text.replace(old, f'extract = "{path}"'))


def _probe_rows(scenario) -> tuple[pd.DataFrame, set[str]]:
    """40 people of the population register civil affairs does not hold, about a third of them with a major
    illness in medical insurance; their rows as civil affairs would write them. Returns the rows and the
    resident IDs of the ill."""
    read = lambda d: pd.read_csv(scenario / f"{d}.csv", dtype=str, keep_default_na=False)  # noqa: E731
    pop, ca, mi = read("population"), read("civil_affairs"), read("medical_insurance")
    # Not in civil affairs by the truth: its register holds some people under a blank or 15-digit ID,
    # whose record (scored without the blank ID) rightly wins its person's links over a probe's copy.
    truth = read("truth")
    person = dict(zip(truth["department"] + ":" + truth["record_id"], truth["person_id"]))
    in_ca = {person[f"civil_affairs:{r}"] for r in ca["record_id"]}
    pop = pop[~pop["record_id"].map(lambda r: person[f"population:{r}"] in in_ca)
              & pop["resident_id"].isin(mi["resident_id"])]
    ill_ids = set(mi.loc[mi["major_illness"] == "1", "resident_id"])
    ill, well = pop[pop["resident_id"].isin(ill_ids)], pop[~pop["resident_id"].isin(ill_ids)]
    chosen = pd.concat([ill.head(15), well.head(PROBES - min(15, len(ill)))])
    assert len(chosen) == PROBES and len(ill.head(15)) >= 4, "the scenario should hold ill people to probe"
    rows = pd.DataFrame({
        "record_id": [f"CAPROBE{i:04d}" for i in range(PROBES)], "name": chosen["name"].values,
        "sex": chosen["sex"].values, "birth_date": chosen["birth_date"].values,
        "resident_id": chosen["resident_id"].values, "address": chosen["address"].values,
        "phone": chosen["phone"].values, "household_id": [f"DBPROBE{i:04d}" for i in range(PROBES)],
        "household_size": "1", "household_monthly_income": "200", "dibao": "1",
        "region_code": chosen["region_code"].values})
    return rows[ca.columns], set(chosen["resident_id"]) & ill_ids


def _set_rules(running, text: str) -> None:
    from server import queries as q

    with running.coordinator.context.store.write() as conn:
        q.set_rules(conn, "pilot", text)


def _delivered(responses: Responses, department: str, since: int) -> list:
    return [m for m in responses.sent.get(department, [])[since:] if m.DESCRIPTOR.name == "Flag"]


@pytest.fixture(scope="module")
def probe(pki, scenario, tmp_path_factory):
    from agents.refs import new_key
    from agents.secret import new_secret
    from bench.harness import write_agent_config
    from fedlink.audit import vkey_path
    from fedlink.operator import Operator
    from fedlink.pki import credentials_for
    from fedlink.schema import Project
    from server.serve import start

    tmp = tmp_path_factory.mktemp("probe")
    responses = Responses()
    audit_key = tmp / "log" / "audit-signing.key"  # this log's own key
    running = start("127.0.0.1:0", new_database(tmp), credentials=credentials_for(pki, "coordinator"),
                    interceptors=(responses,), audit_key=audit_key, witnesses=pki / "coordinator" / "witnesses.toml")
    address = f"127.0.0.1:{running.port}"
    out = {"responses": responses}
    secret = new_secret(tmp / "project.secret").read_text()
    try:
        with Operator.connect(address, pki) as op:
            op.create_project(Project.default("pilot", reference_date="2025-06-30"))
            configs = {}
            for d in DEPARTMENTS:
                work = tmp / d
                work.mkdir()
                (work / "pki").symlink_to(pki)
                (work / "project.secret").write_text(secret)
                configs[d] = write_agent_config(work, d, scenario / f"{d}.csv", address, {}, project="pilot",
                                                log_key=vkey_path(audit_key))
                new_key(work / "agents" / f"{d}.refkey")
                with Agent(load_config(configs[d]), show_progress=False) as agent:
                    agent.upload()
            runs = [op.start_run("pilot", "2025-06-30")]
            assert op.watch(runs[0]) == "done"

            rows, ill = _probe_rows(scenario)
            probed = tmp / "civil_affairs-probe.csv"
            pd.concat([pd.read_csv(scenario / "civil_affairs.csv", dtype=str, keep_default_na=False), rows]
                      ).to_csv(probed, index=False)
            _extract(configs["civil_affairs"], probed)
            with Agent(load_config(configs["civil_affairs"]), show_progress=False) as agent:
                agent.upload()
            runs.append(op.start_run("pilot", "2025-07-31"))
            assert op.watch(runs[1]) == "done"
            marks = {d: len(responses.sent.get(d, [])) for d in DEPARTMENTS}
            lists = {}
            for d in ("civil_affairs", "medical_insurance"):
                with Agent(load_config(configs[d]), show_progress=False) as agent:
                    agent.write_worklist(tmp / f"{d}-2.csv")
                lists[d] = pd.read_csv(tmp / f"{d}-2.csv", dtype=str, keep_default_na=False)
            out.update(run=runs[1], rows=rows, ill=ill, lists=lists,
                       received=_delivered(responses, "civil_affairs", marks["civil_affairs"]),
                       report=op.report(runs[1]))

            # The control: the policy widened (written to the store: how it got there is dual control's
            # concern) and the probe rows stay one more run.
            _set_rules(running, WIDENED)
            runs.append(op.start_run("pilot", "2025-08-31"))
            assert op.watch(runs[2]) == "done"
            with Agent(load_config(configs["civil_affairs"]), show_progress=False) as agent:
                agent.write_worklist(tmp / "civil_affairs-3.csv")
            out["widened"] = pd.read_csv(tmp / "civil_affairs-3.csv", dtype=str, keep_default_na=False)

            # The probe rows go again: records that appeared in one upload and vanished in the next.
            _set_rules(running, default_text())
            _extract(configs["civil_affairs"], (scenario / "civil_affairs.csv").resolve())
            with Agent(load_config(configs["civil_affairs"]), show_progress=False) as agent:
                agent.upload(force=True)  # the prober removes its 40 rows on purpose, past the removal guard
            runs.append(op.start_run("pilot", "2025-09-30"))
            assert op.watch(runs[3]) == "done"
            out["after"] = op.report(runs[3])
        with Officer.connect(address, pki) as officer:
            out["access"] = access_report(officer.events())
            out["events"] = [json.loads(b) for _, b in officer.events()]
            out["run_events"] = [json.loads(b) for _, b in officer.events(run_id=runs[1])]
            out["access_run"] = officer.access(run_id=runs[1])
            out["access_department"] = officer.access(department="civil_affairs")
            out["access_whole"] = officer.access()
    finally:
        running.stop(grace=2)
    return out


def test_the_probe_learns_no_other_departments_indicator(probe):
    pack = load_rulepack()
    received = probe["received"]
    assert received, "civil affairs should receive its ordinary flags"
    probe_ids = set(probe["rows"]["record_id"])
    assert not probe_ids & set(probe["lists"]["civil_affairs"]["record_id"]), "a flag on a probe row came back"
    others = [t for r in pack.rules for t in r.terms]
    for f in received:
        assert {fd.name for fd, _ in f.ListFields()} <= FLAG_FIELDS
        policy = pack.disclosure[f.need]
        assert policy.recipient(DEPARTMENTS) == "civil_affairs" or "civil_affairs" in policy.recipients
        assert f.departments_linked == 0 and len(f.match_scores) <= 1
        for reason in f.reasons:
            for term in reason.indicators:
                assert term == NEUTRAL or policy.shows("civil_affairs", term), f"{f.need}: {term} disclosed"
        for term in others:  # no other department's fact outside the policy is named in the explanation
            if not policy.shows("civil_affairs", term) and not term.startswith(("absent:", "present:")):
                for text, lang in ((f.explanation, "en"), (f.explanation_zh, "zh")):
                    assert fact(term, lang) not in text and fact(term, lang, True) not in text
        assert "Linked across" not in f.explanation and "Found in" not in f.explanation  # no departments list
        assert "关联（" not in f.explanation_zh and "仅见于" not in f.explanation_zh
        assert list(f.match_departments) == []


def test_the_probe_shows_in_the_report_the_audit_log_and_the_officers_view(probe):
    signals = {p["department"]: p for p in probe["report"]["probe_signals"]}
    later = {p["department"]: p for p in probe["after"]["probe_signals"]}
    ca = signals["civil_affairs"]
    assert int(ca["records_first_seen"]) == PROBES
    assert int(ca["flags_held"]) >= 1  # the probe rows did find needs: they were held, not delivered
    assert all(int(signals[d]["records_first_seen"]) == 0 for d in DEPARTMENTS if d != "civil_affairs")
    assert int(ca["flags_on_first_seen_records"]) >= 1
    print(f"probe signals of civil affairs: {dict(ca)}; after the rows went: {dict(later['civil_affairs'])}")
    assert int(later["civil_affairs"]["records_short_lived"]) == PROBES
    view = probe["access"]["departments"]["civil_affairs"][probe["run"]]
    assert view["probe_signals"]["records_first_seen"] == PROBES and view["pulls"] >= 1
    # Every disclosure of another department's evidence is in the delivery's audit event, counted.
    shown: dict[str, int] = {}
    for f in probe["received"]:
        for kind in {t.removeprefix("not ") for r in f.reasons for t in r.indicators
                     if t != NEUTRAL and not t.removeprefix("not ").startswith("civil_affairs.")}:
            shown[kind] = shown.get(kind, 0) + 1
    assert view["disclosed"] == shown


def test_the_planted_flags_in_medical_insurance_say_they_rest_on_new_records(probe):
    mi = probe["lists"]["medical_insurance"]
    planted = mi[mi["resident_id"].isin(set(probe["rows"]["resident_id"])) & (mi["status"] == "new")]
    assert len(planted) >= 1, "the probe should plant flags in medical insurance's worklist"
    print(f"flags the probe planted in medical insurance's worklist: {len(planted)}, all marked")
    assert set(planted["rests_on_first_seen"]) == {"1"}
    assert planted["explanation"].str.contains("first seen in another register's latest upload").all()
    ordinary = mi[~mi["resident_id"].isin(set(probe["rows"]["resident_id"]))]
    assert set(ordinary["rests_on_first_seen"]) <= {"0"}


def test_the_capture_sees_the_leak_under_a_widened_policy(probe):
    """The control: with illness routed to civil affairs by name and the probe rows kept a run, civil affairs
    reads medical insurance's major-illness status for exactly the ill people it probed."""
    widened = probe["widened"]
    learned = widened[widened["record_id"].isin(set(probe["rows"]["record_id"]))
                      & widened["reasons"].str.contains("medical_insurance.major_illness")]
    found = set(learned["resident_id"])
    print(f"widened policy: civil affairs read major illness for {len(found)} of {len(probe['ill'])} ill probes")
    assert found <= probe["ill"] and len(found) >= 0.8 * len(probe["ill"])


def test_a_widened_policy_is_named_in_the_rules_audit_event():
    from server.domain.changes import rule_changes

    changes = rule_changes(load_rulepack(), load_rulepack(WIDENED))
    assert changes["disclosure_added"] == [["medical_hardship", "civil_affairs", "flag"],
                                           ["medical_hardship", "civil_affairs", "medical_insurance.major_illness"]]
    assert changes["disclosure_removed"] == []
    assert rule_changes(load_rulepack(WIDENED), load_rulepack())["disclosure_removed"] == \
        changes["disclosure_added"]


def test_one_run_s_access_report_reads_only_that_run_s_events(probe):
    """ListAuditEvents' run filter (the console's access page for one run): the coordinator returns the
    events whose details name the run, no other; the report on the events it sends for the report is the
    one on the whole log, cut to that run or department."""
    run = probe["run"]
    named = [e for e in probe["events"] if e["details"].get("run_id") == run]
    assert named and {e["kind"] for e in named} >= {"run.done", "flags.deliver"}
    # The read of the run's events is itself logged after the fixture took `events`: compare up to there.
    assert probe["run_events"][:len(named)] == named and len(probe["run_events"]) == len(named)
    assert len(named) < len(probe["events"]) / 2
    print(f"the access page of run {run} reads {len(named)} of the log's {len(probe['events'])} events")
    whole = [(i, json.dumps(e)) for i, e in enumerate(probe["events"])]
    assert probe["access_run"]["departments"] == access_report(
        [(s, b) for s, b in whole if json.loads(b)["details"].get("run_id") == run])["departments"]
    assert set(probe["access_run"]["departments"]["civil_affairs"]) == {run}
    assert probe["access_department"]["departments"].keys() == {"civil_affairs"}
    assert probe["access_whole"]["departments"] == probe["access"]["departments"]
