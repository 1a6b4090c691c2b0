"""`fedlink demo`: synthesise a population with the errors real registers
have (at twice the usual rates, so some links are missed and some are wrong),
run the whole flow on loopback with mutual TLS, print what was found against
the truth; then caseworkers review some flags (one of them resting on a false
link, which the review corrects), a month passes, and a second run shows which
needs are new, continuing, in a gradual-exit transition or resolved. Every
count says whether it counts persons or department records."""
from __future__ import annotations

import csv
import random
import time
from datetime import date, timedelta
from pathlib import Path

import grpc
import pandas as pd
from rich.console import Console
from rich.table import Table

from agents.secret import new_secret
from bench.ceremony import key_ceremony
from bench.harness import BenchSession, scenario_departments
from bench.metrics import flag_quality, pairwise_quality
from bench.synth import write_scenario
from fedlink.client import CoordinatorClient
from fedlink.officer import Officer, print_proposal
from fedlink.operator import Operator
from fedlink.rules import default_text
from fedlink.v1 import coordinator_pb2 as pb


def next_month(src: Path, dst: Path, change) -> Path:
    """A department's extract a month later: the same rows, some values changed."""
    with src.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        change(row)
    with dst.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dst


# Twice the error rates of bench/synth/extracts.py: enough misses and false links to be worth reviewing.
ERROR_SCALE = 2.0

NEXT_STEPS = (
    "open a worklist: fedlink-demo/worklists/population-month2.csv (columns: README, \"Running it by hand\")",
    "run the README's \"Running it by hand\" section: a three-department pilot from a clean folder",
    "leave a department out of project.toml and see `project create` name the rules that cannot fire",
    "try the upload guards: an empty extract (header only) is refused; `fedlink agent check` sends nothing",
    "set language = \"zh\" in an agent's TOML and write a worklist with --out worklist.xlsx",
    "verify the audit log yourself: fedlink audit verify fedlink-demo/audit (docs/design.md)",
    "measure linkage quality at scale: fedlink synth + fedlink bench (docs/quality.md)",
)


def false_flag(flags: pd.DataFrame, links: pd.DataFrame, truth: pd.DataFrame, needs: pd.DataFrame):
    """A delivered flag on a person not truly in that need, and the review that corrects it:
    wrong_person when the record was linked to another person's records (a false link), else
    not_in_need. None when every flag was right."""
    linked = links.merge(truth, on=["department", "record_id"], how="left")
    mixed = linked.groupby("cluster_id")["person_id"].nunique()
    false_links = set(linked.loc[linked["cluster_id"].isin(mixed[mixed > 1].index), "record_id"])
    flagged = flags.merge(truth, on=["department", "record_id"], how="left")
    true = set(zip(needs["person_id"], needs["need"]))
    wrong = flagged[[(p, n) not in true for p, n in zip(flagged["person_id"], flagged["need"])]]
    if wrong.empty:
        return None
    on_false_link = wrong[wrong["record_id"].isin(false_links)]
    row = (on_false_link if len(on_false_link) else wrong).iloc[0]
    return row, "wrong_person" if len(on_false_link) else "not_in_need"


def status_by_person(flags: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Persons per need and status: a person flagged at several departments counts once."""
    persons = flags.merge(truth, on=["department", "record_id"], how="left")
    return persons.drop_duplicates(["person_id", "need", "status"]).pivot_table(
        index="need", columns="status", values="person_id", aggfunc="count", fill_value=0)
def refusal_of_spare(session: BenchSession) -> str:
    with CoordinatorClient.connect(session.address, session.pki, "spare") as spare:
        try:
            spare._call(spare.stub.GetCheckpoint, pb.GetCheckpointRequest(), timeout=10)
        except grpc.RpcError as e:
            return f"refused, {e.code().name}: {e.details()}"
    raise RuntimeError("the coordinator answered a revoked certificate")


def run_demo(out: Path, persons: int = 2000, seed: int = 7) -> dict:
    console = Console()
    out = Path(out)
    started = time.perf_counter()
    scenario = out / "scenario"
    console.rule("fedlink demo")
    console.print(f"1. Synthesising {persons} persons across six departments into {scenario}, with the "
                  f"typing errors, pinyin names, legacy IDs and stale addresses of real registers at {ERROR_SCALE:g}x "
                  "the usual rates")
    write_scenario(scenario, persons, seed=seed, error_scale=ERROR_SCALE)
    console.print("   The key ceremony: each party makes its own key; the CA operator signs, delivers, revokes")
    if not (out / "pki" / "ca").exists():
        key_ceremony(out / "pki", scenario_departments(scenario), console.print)
    if not (out / "project.secret").exists():
        new_secret(out / "project.secret")
    console.print(f"   One department makes the project secret ({out / 'project.secret'}, fedlink secret new) "
                  "and gives it to the others, never to the coordinator")
    console.print("2. A coordinator on loopback with mutual TLS; each department's agent normalises, encodes "
                  "and uploads its extract; the operator runs the linkage; each agent pulls its worklist")
    with BenchSession(scenario, out, console=console) as s:
        console.print(f"   The revoked spare certificate calls the coordinator: {refusal_of_spare(s)}")
        for d in s.departments:
            s.upload(d)
        run1, report, _ = s.run()
        worklists, flags = s.worklists(run1, "-month1")
        links = s.links(run1)
        truth = pd.read_csv(scenario / "truth.csv", dtype=str, keep_default_na=False)
        needs = pd.read_csv(scenario / "needs.csv", dtype=str, keep_default_na=False)
        quality = pairwise_quality(links, truth)
        found = flag_quality(flags, truth, needs)
        console.print(f"\nLinkage: {len(links)} department records grouped into {report['persons']} persons; "
                      f"{quality['true_pairs'] - quality['true_positive_pairs']} of the "
                      f"{quality['true_pairs']} record pairs that are one person were missed (recall "
                      f"{quality['recall']:.4f}), {quality['predicted_pairs'] - quality['true_positive_pairs']} of "
                      f"the {quality['predicted_pairs']} linked pairs join two persons (precision "
                      f"{quality['precision']:.4f})")
        table = Table(title="Persons in need found, month 1 (against the scenario's truth)")
        for col in ("need", "persons flagged", "persons truly in need", "precision", "recall"):
            table.add_column(col, justify="left" if col == "need" else "right")
        for need, q in found.items():
            table.add_row(need, str(q["flagged_persons"]), str(q["true_persons"]), f"{q['precision']:.3f}",
                          f"{q['recall']:.3f}")
        console.print(table)

        console.print("3. Caseworkers review flags from their worklists; outcomes go back to the coordinator")
        reviewed = []
        wrong = false_flag(flags, links, truth, needs)
        if wrong is not None:  # a flag the truth says is wrong: the caseworker's review corrects it
            row, outcome = wrong
            with s.agent(row["department"]) as agent:
                agent.record_outcome(row["record_id"], row["need"], outcome, run1)
            why = ("its record was linked to another person's records (a false link)" if outcome == "wrong_person"
                   else "the caseworker finds the person is not in need")
            reviewed.append(f"{row['department']} record {row['record_id']}, {row['need']}: a wrong flag: {why}: "
                            f"{outcome}")
        for d, outcome in (("population", "confirmed"), ("civil_affairs", "assistance_granted"),
                           ("medical_insurance", "not_in_need")):
            wl = pd.read_csv(worklists[d], dtype=str, keep_default_na=False, encoding="utf-8-sig")
            if wrong is not None:  # one review per flag: the wrong one is reviewed above
                wl = wl[wl["record_id"] != wrong[0]["record_id"]]
            if len(wl):
                row = wl.iloc[0]
                with s.agent(d) as agent:
                    until = agent.record_outcome(row["record_id"], row["need"], outcome, run1)
                reviewed.append(f"{d} {row['need']}: {outcome}" + (f" (not raised again before {until})"
                                                                   if until else ""))
        for line in reviewed:
            console.print(f"   {line}")

        month2 = (date.fromisoformat(s.project.reference_date) + timedelta(days=31)).isoformat()
        rng = random.Random(seed)

        def medical(row):  # some patients' costs were covered, some others fell seriously ill
            oop = float(row["out_of_pocket_12m"] or 0)
            if oop >= 20000 and rng.random() < 0.5:
                row["out_of_pocket_12m"], row["major_illness"] = "0", "0"
            elif oop < 20000 and rng.random() < 0.02:
                row["out_of_pocket_12m"], row["major_illness"] = "48000", "1"

        def housing(row):  # some owners of several properties sold them
            if int(row["properties_owned"] or 0) >= 2 and rng.random() < 0.5:
                row["properties_owned"] = "1"

        console.print(f"4. A month later ({month2}): medical insurance and housing send new extracts; second run")
        s.upload("medical_insurance", next_month(scenario / "medical_insurance.csv",
                                                 out / "medical_insurance-month2.csv", medical))
        s.upload("housing", next_month(scenario / "housing.csv", out / "housing-month2.csv", housing))
        run2, report2, _ = s.run(month2)
        worklists2, flags2 = s.worklists(run2, "-month2")
        status = status_by_person(flags2, truth)
        table = Table(title="Persons flagged in month 2, by status against month 1")
        table.add_column("need")
        columns = [c for c in ("new", "continuing", "transition", "resolved") if c in status.columns]
        for c in columns:
            table.add_column(c, justify="right")
        for need, row in status.iterrows():
            table.add_row(need, *[str(int(row[c])) for c in columns])
        console.print(table)
        table = Table(title="Review outcomes in the operator's report (flags reviewed; under 5 shown as <5)")
        table.add_column("rule / outcome")
        table.add_column("flags", justify="right")
        for c in report2.get("outcomes_per_rule", []):
            table.add_row(c["key"].replace("/", " / "), "<5" if c.get("suppressed") else str(c.get("count", 0)))
        console.print(table)
        first = (date.today().replace(day=1) + timedelta(days=32)).replace(day=1)  # the 1st of next month
        with Operator.connect(s.address, s.pki) as op:  # from now on the coordinator starts the runs itself
            sched = op.set_schedule(s.project.project_id, "1mo", day=1, at="02:00", start=first.isoformat())
        console.print(f"5. The operator schedules monthly runs from {first.isoformat()} (day 1, 02:00 UTC): the "
                      f"coordinator starts each when it is due; the next is due {sched.next_due}")
        pending = propose_wider_routing(s, console)
        audit = s.verify_audit()
    console.print("Worklists for caseworkers (each department sees only its own records):")
    for d in worklists:
        console.print(f"  {d:18s} {worklists[d]}  {worklists2[d]}")
    console.print(f"Audit log verified offline by the privacy officer: {audit['tree_size']} events of "
                  f"{audit['origin']}, root {audit['root_hash']}, cosigned by the witnesses "
                  f"{', '.join(audit['cosigners']) or 'none'} and by the officer (export in {out / 'audit'})")
    console.print(f"The console on this demo's data, at https://localhost:8443/ (README, \"The console\"): "
                  f"fedlink coordinator serve --pki {out / 'pki' / 'coordinator'} --database {out / 'coordinator.sqlite'} "
                  f"--audit-key {out / 'log' / 'audit-signing.key'} & "
                  f"fedlink console serve --pki {out / 'pki'} --log-key {out / 'log' / 'audit-signing.vkey'}; import the file of `fedlink pki p12 {out / 'pki'} "
                  "operator` (or officer) into the browser to sign in")
    console.print(f"Done in {time.perf_counter() - started:.1f} s. What to try next:")
    for step in NEXT_STEPS:
        console.print(f"  - {step}")
    return {"links": quality, "flags": found, "audit": audit, "run_ids": [run1, run2], "pending": pending}


# The change an operator alone could once make: a rule on major illness alone, its flags routed to
# the population register with the illness shown by name.
WIDER_RULE = """
[[rules]]
name = "major_illness_to_population"
need = "medical_hardship"
tier = 3
when = "medical_insurance.major_illness"
explain = "a major illness"
"""


def wider_routing(text: str) -> str:
    return text.replace('[disclosure.medical_hardship]\nrecipients = ["medical_insurance"]\n',
                        '[disclosure.medical_hardship]\nrecipients = ["population", "medical_insurance"]\n'
                        'evidence.population = ["medical_insurance.major_illness"]\n') + WIDER_RULE


def propose_wider_routing(s: BenchSession, console: Console) -> str:
    """Dual control: the operator proposes a rule that would tell the population register about major
    illness; it waits for a privacy officer, and nothing changes until one decides."""
    console.print("6. The operator proposes a rule change; it is only a proposal until a privacy officer "
                  "approves it (`fedlink approvals show|approve|reject`):")
    with Operator.connect(s.address, s.pki) as op:
        proposal = op.propose_rules(s.project.project_id, wider_routing(s.project.rules_toml or default_text()),
                                    reason="population asks to follow up residents with a major illness")
    with Officer.connect(s.address, s.pki) as officer:
        print_proposal(officer.proposal(proposal.proposal_id), console)
        waiting = officer.proposals(s.project.project_id, "pending")
    console.print(f"   {len(waiting)} proposal(s) waiting for an officer; the project's rules are unchanged")
    return proposal.proposal_id
