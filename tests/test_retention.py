"""Retention against a real coordinator and real agents: after three runs
with re-uploads, the records of the upload no kept run used are gone from the
store, the deletion is audited, the report says what is held, and the flags
and statuses of the runs kept are what a coordinator that keeps everything
computes from the same uploads."""
from __future__ import annotations

import json
from dataclasses import replace

import grpc
import pytest

from dbutil import BACKEND, new_database, query, scalar

from agents.client import Agent
from agents.config import load_config
from fedlink.audit import vkey_path
from fedlink.operator import Operator
from fedlink.pki import credentials_for


def extracts(scenario, tmp_path) -> list:
    """Three population extracts: the whole, then one and two rows fewer (three uploads)."""
    lines = (scenario / "population.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    out = []
    for drop in range(3):
        path = tmp_path / f"population-{drop}.csv"
        path.write_text("".join(lines[:len(lines) - drop]), encoding="utf-8")
        out.append(path)
    return out


def three_runs(address: str, pki, configs: dict, population: list,
               log_key=None) -> tuple[list[str], list[str], dict]:
    """Upload, run, re-upload, run, re-upload, run. Returns the population upload ids, the run ids, and the
    flags (need, status, since, ref) each department pulled right after each run."""
    def agent(department: str, extract=None) -> Agent:
        # Another coordinator is another log, with its own key: the agent witnesses it apart.
        config = replace(configs[department], coordinator=address, audit_key=log_key or configs[department].audit_key,
                         state_dir=configs[department].state_dir.with_name(f"state-{department}-{address}"))
        return Agent(replace(config, extract=extract) if extract else config, show_progress=False)

    uploads, runs, flags = [], [], {}
    with agent("medical_insurance") as a:
        a.upload()
    with Operator.connect(address, pki) as op:
        for i, extract in enumerate(population):
            with agent("population", extract) as a:
                uploads.append(a.upload().upload_id)
            runs.append(op.start_run("pilot", f"2025-0{6 + i}-28"))
            assert op.watch(runs[-1]) == "done"
            for d in ("population", "medical_insurance"):
                with agent(d, extract if d == "population" else None) as a:
                    flags[runs[-1], d] = sorted((f.need, f.status, f.since, f.ref) for f in a.pull_flags(runs[-1]))
    return uploads, runs, flags


def test_uploads_no_kept_run_used_are_deleted_and_the_rest_is_unchanged(
        scenario, agent_config, coordinator, operator, project, pki, tmp_path):
    from fedlink.schema import Project
    from server.serve import start

    configs = {d: load_config(agent_config(d)) for d in ("population", "medical_insurance")}
    population = extracts(scenario, tmp_path)
    uploads, runs, flags = three_runs(coordinator.address, pki, configs, population)
    db = coordinator.database

    # The first population upload: no kept run used it, it is no one's current upload.
    assert scalar(db, "select count(*) from records where upload_id = :u", u=uploads[0]) == 0
    assert scalar(db, "select count(*) from uploads where upload_id = :u", u=uploads[0]) == 0
    assert scalar(db, "select count(*) from records where upload_id = :u", u=uploads[1]) > 0
    assert scalar(db, "select count(*) from flags where run_id = :r", r=runs[0]) == 0
    assert scalar(db, "select count(*) from links where run_id = :r", r=runs[0]) == 0
    assert scalar(db, "select count(*) from links where run_id = :r", r=runs[1]) > 0
    first_rows = len(population[0].read_text(encoding="utf-8").splitlines()) - 1
    (body,), = query(db, "select body from audit_events where kind = 'retention.purge'")
    details = json.loads(body)["details"]
    assert details["uploads"] == {uploads[0]: "population"} and details["records"] == first_rows
    assert details["runs"] == [runs[0]] and details["keep_runs"] == 2

    held = operator.report(runs[2])["retention"]
    total = scalar(db, "select count(*) from records")
    assert int(held["uploads_held"]) == 3 and int(held["keep_runs"]) == 2
    assert int(held["records_held"]) == total and int(held["records_purged"]) == first_rows
    assert int(held["uploads_purged"]) == 1 and int(held["runs_purged"]) == 1 and held["oldest_held"]

    with Agent(replace(configs["population"], extract=population[2]), show_progress=False) as a:
        with pytest.raises(grpc.RpcError) as e:
            a.pull_flags(runs[0])
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "retention" in e.value.details()
    for d in ("population", "medical_insurance"):  # the run before the last, pulled again after the purge
        with Agent(replace(configs[d], extract=population[2]) if d == "population" else configs[d],
                   show_progress=False) as a:
            assert sorted((f.need, f.status, f.since, f.ref) for f in a.pull_flags(runs[1])) == flags[runs[1], d]
    if BACKEND == "sqlite":  # the space is given back, not left free inside the file
        assert scalar(db, "pragma auto_vacuum") == 2 and scalar(db, "pragma freelist_count") == 0

    # The same uploads on a coordinator that keeps everything: the kept runs' flags are the same.
    keeper_key = tmp_path / "keeper-log" / "audit-signing.key"  # another log, another audit key
    keeper = start("127.0.0.1:0", new_database(tmp_path, "keeper"), credentials=credentials_for(pki, "coordinator"),
                   keep_runs=0, audit_key=keeper_key, witnesses=pki / "coordinator" / "witnesses.toml")
    try:
        address = f"127.0.0.1:{keeper.port}"
        with Operator.connect(address, pki) as op:
            op.create_project(Project.default("pilot", reference_date="2025-06-30"))
        _, kept_runs, kept_flags = three_runs(address, pki, configs, population, vkey_path(keeper_key))
    finally:
        keeper.stop(grace=1)
    for mine, theirs in zip(runs[1:], kept_runs[1:]):
        for d in ("population", "medical_insurance"):
            assert flags[mine, d] == kept_flags[theirs, d]
    # Statuses carried over from the kept run before: a purge that took them would make them all "new".
    assert {status for _, status, _, _ in flags[runs[2], "population"]} == {"continuing"}
