"""The whole path on a small synthetic population: six agents upload over
mutual TLS, the operator runs and watches the linkage, reads the report, and
each agent pulls its own worklist; then the truth file checks what was found."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.harness import run_bench
from dbutil import new_database


@pytest.fixture(scope="module")
def bench_run(scenario, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    metrics = run_bench(scenario, out, database=new_database(out))
    return out, metrics


def test_bench_writes_links_flags_and_metrics(bench_run, scenario):
    out, metrics = bench_run
    links = pd.read_csv(out / "links.csv", dtype=str)
    truth = pd.read_csv(scenario / "truth.csv", dtype=str)
    assert list(links.columns) == ["department", "record_id", "cluster_id"]
    # Every record of every department has its cluster, under its own record_id.
    assert set(map(tuple, links[["department", "record_id"]].values)) == set(
        map(tuple, truth[["department", "record_id"]].values))
    flags = pd.read_csv(out / "flags.csv", dtype=str)
    assert list(flags.columns) == ["department", "record_id", "need", "tier"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["links"] == metrics["links"]
    assert set(saved["times_s"]) >= {"normalise_encode", "upload", "link", "rules", "store", "flag_delivery",
                                     "bookkeeping", "audit_verify"}
    assert saved["times_s"]["bookkeeping"] > 0
    # The peak is read after the bookkeeping, the bench's own largest step at scale.
    assert saved["peak_memory_mb"] > 0
    assert saved["links"]["f1"] >= 0.95, saved["links"]


def test_no_person_holds_two_records_of_one_department(bench_run):
    out, _ = bench_run
    links = pd.read_csv(out / "links.csv", dtype=str)
    assert not links.duplicated(["cluster_id", "department"]).any()


def test_flags_are_found_again_from_the_worklists_by_the_truth(bench_run, scenario):
    out, metrics = bench_run
    truth = pd.read_csv(scenario / "truth.csv", dtype=str)
    needs = pd.read_csv(scenario / "needs.csv", dtype=str)
    found = []
    for department, path in metrics["worklists"].items():
        wl = pd.read_csv(path, dtype=str, keep_default_na=False)
        own = pd.read_csv(scenario / f"{department}.csv", dtype=str, keep_default_na=False)
        # A worklist holds only the department's own rows, joined to its own columns.
        assert set(wl["record_id"]) <= set(own["record_id"])
        assert (wl["explanation"] != "").all() and (wl["reasons"] != "").all()
        merged = wl.merge(own[["record_id", "name"]], on="record_id", suffixes=("", "_own"))
        assert (merged["name"] == merged["name_own"]).all()
        wl["department"] = department
        found.append(wl[["department", "record_id", "need"]])
    found = pd.concat(found).merge(truth, on=["department", "record_id"])
    flagged = set(map(tuple, found[["person_id", "need"]].values))
    true = set(map(tuple, needs[["person_id", "need"]].values))
    assert true, "the scenario has people in need"
    assert len(flagged & true) / len(true) >= 0.9
    assert len(flagged & true) / len(flagged) >= 0.9


def test_run_progress_is_streamed_and_report_suppresses_small_cells(scenario, pki, agent_config, coordinator,
                                                                    operator, project):
    from agents.client import Agent
    from agents.config import load_config
    from fedlink.schema import DEPARTMENTS

    for d in DEPARTMENTS:
        with Agent(load_config(agent_config(d)), show_progress=False) as agent:
            agent.upload()
    run_id = operator.start_run("pilot")
    events = list(operator.progress(run_id))
    phases = [e.phase for e in events]
    assert phases[-1] == "done" and events[-1].state == "done"
    for phase in ("compare", "cluster", "rules"):
        assert phase in phases
    compare = [e for e in events if e.phase == "compare"]
    assert compare[-1].done == compare[-1].total > 0
    report = operator.report(run_id)
    assert report["state"] == "done" and report["suppression_k"] == 5
    cells = [c for section in ("records_per_department", "linked_pairs_per_department_pair",
                               "persons_by_department_count", "flags_per_need") for c in report[section]]
    for c in cells:
        count = int(c.get("count", 0))
        assert count == 0 or count >= 5, c
        if c.get("suppressed"):
            assert count == 0
    assert {c["key"] for c in report["records_per_department"]} == set(DEPARTMENTS)


def test_a_bench_run_again_in_its_folder_finds_the_same_links_and_flags(bench_run, scenario, tmp_path):
    """Its secret and reference keys are kept, so the same filters, thresholds and links;
    the new coordinator's log is a new log to the agents (their witness state is reset)."""
    from dbutil import SERVER

    out, metrics = bench_run

    def rows(name: str) -> pd.DataFrame:
        frame = pd.read_csv(out / name, dtype=str)
        return frame.sort_values(list(frame.columns), ignore_index=True)

    before = {f: rows(f) for f in ("links.csv", "flags.csv")}
    again = run_bench(scenario, out, database=new_database(tmp_path) if SERVER else None)
    for key in ("links", "links_per_department_pair", "missed_links_by_group", "flags", "thresholds_used",
                "persons_linked"):
        assert again[key] == metrics[key], key
    for f, frame in before.items():
        pd.testing.assert_frame_equal(rows(f), frame)
    assert again["audit"]["verified"] and again["run_id"] != metrics["run_id"]
