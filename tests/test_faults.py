"""Faults, with real processes: the coordinator is killed with SIGKILL during
an upload, during a run and during flag delivery, then restarted on the same
database. Uploads resume without duplicates, an interrupted run is marked
failed (never left "running", never half its flags) and runs again cleanly,
no flag is lost or delivered twice, and an agent that cannot reach the
coordinator retries with backoff, says so, and counts nothing as uploaded
that the coordinator did not commit."""
from __future__ import annotations

import csv
import json
import subprocess

import grpc
import pytest

from agents.client import Agent
from agents.config import load_config
from conftest import REFERENCE_DATE
from dbutil import query, scalar
from fedlink.operator import Operator
from fedlink.schema import Project
from procs import FEDLINK, CoordinatorProcess, agent_toml, wait_for

DEPARTMENTS = ("population", "civil_affairs", "medical_insurance")


@pytest.fixture
def site(tmp_path, pki, database, secret_file):
    coordinator = CoordinatorProcess(tmp_path, pki, database)
    with Operator.connect(coordinator.address, pki) as op:
        op.create_project(Project.default("pilot", reference_date=REFERENCE_DATE))
    yield coordinator
    coordinator.kill()


def records_stored(database) -> int:
    return scalar(database, "select count(*) from records")


def test_kill_9_during_an_upload_then_restart_resumes_without_duplicates(site, pki, scenario, secret_file, tmp_path):
    extract = scenario / "population.csv"
    total = len(extract.read_text(encoding="utf-8").splitlines()) - 1
    config = agent_toml(tmp_path, pki, "population", site.address, extract, secret_file, batch_size=1)
    agent = subprocess.Popen([*FEDLINK, "agent", "upload", "--config", str(config), "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: records_stored(site.database) >= total // 4, "a quarter of the upload")
        site.kill()
        at_kill = records_stored(site.database)
        assert 0 < at_kill < total
        # Nothing half-done: every stored record belongs to a whole stored batch, and the
        # upload is not counted as complete.
        assert scalar(site.database, "select coalesce(sum(record_count), 0) from batches") == at_kill
        assert query(site.database, "select state from uploads") == [("open",)]
        site.start()  # same port, same database, within the agent's backoff
        out, err = agent.communicate(timeout=180)
    finally:
        agent.kill()
    assert agent.returncode == 0, err
    assert "retrying in" in err and "resumes where it stopped" in err
    assert records_stored(site.database) == total
    assert scalar(site.database, "select count(distinct ref) from records") == total
    assert query(site.database, "select state, record_count from uploads") == [("committed", total)]
    assert scalar(site.database, "select count(*) from batches") == total


def test_an_agent_that_gives_up_leaves_the_upload_open_and_resumes_later(site, pki, scenario, secret_file,
                                                                         tmp_path):
    extract = scenario / "population.csv"
    total = len(extract.read_text(encoding="utf-8").splitlines()) - 1
    config = agent_toml(tmp_path, pki, "population", site.address, extract, secret_file, batch_size=1,
                        retries=1)
    agent = subprocess.Popen([*FEDLINK, "agent", "upload", "--config", str(config), "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: records_stored(site.database) >= 10, "the upload to start")
        site.kill()  # and it stays down
        _, err = agent.communicate(timeout=120)
    finally:
        agent.kill()
    err = " ".join(err.split())
    assert agent.returncode == 5  # unreachable: the same command later may succeed
    assert "retrying in" in err and "upload not complete" in err and "run the same command again" in err
    assert query(site.database, "select state from uploads") == [("open",)]
    site.start()
    with Operator.connect(site.address, pki) as op, pytest.raises(grpc.RpcError) as e:
        op.start_run("pilot", REFERENCE_DATE)  # an open upload is not data
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    done = subprocess.run([*FEDLINK, "agent", "upload", "--config", str(config), "--quiet"], capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert records_stored(site.database) == total
    assert query(site.database, "select state from uploads") == [("committed",)]


def upload_all(site, pki, scenario, secret_file, tmp_path) -> dict[str, "Path"]:
    configs = {}
    for d in DEPARTMENTS:
        configs[d] = agent_toml(tmp_path, pki, d, site.address, scenario / f"{d}.csv", secret_file,
                                batch_size=200)
        with Agent(load_config(configs[d]), show_progress=False) as agent:
            agent.upload()
    return configs


def flag_keys(database, run_id: str) -> list[tuple]:
    return query(database, "select department, record_id, need from flags where run_id = :r", r=run_id)


@pytest.mark.parametrize("point", ["run.rules", "run.finishing"])
def test_kill_9_during_a_run_marks_it_failed_and_a_new_run_is_whole(site, pki, scenario, secret_file, tmp_path,
                                                                    point):
    """run.rules: killed while computing; run.finishing: killed after its links
    and flags were committed but before it was marked done."""
    configs = upload_all(site, pki, scenario, secret_file, tmp_path)
    site.kill()
    mark = tmp_path / "fault"
    site.start(env={"FEDLINK_FAULT_PAUSE": point, "FEDLINK_FAULT_FILE": str(mark)})
    with Operator.connect(site.address, pki) as op:
        run_id = op.start_run("pilot", REFERENCE_DATE)
    wait_for(lambda: mark.exists() and point in mark.read_text(), f"the run to reach {point}")
    site.kill()
    assert query(site.database, "select state from runs where run_id = :r", r=run_id) == [("running",)]
    if point == "run.finishing":
        assert flag_keys(site.database, run_id), "the kill should land after the flags were stored"

    site.start()
    state, error = query(site.database, "select state, error from runs where run_id = :r", r=run_id)[0]
    assert state == "failed" and error.startswith("interrupted")
    assert flag_keys(site.database, run_id) == []  # no half of a run's flags survives
    assert scalar(site.database, "select count(*) from links where run_id = :r", r=run_id) == 0
    events = [json.loads(b) for (b,) in query(site.database, "select body from audit_events where kind = 'run.failed'")]
    assert [e["details"]["run_id"] for e in events] == [run_id]
    with Agent(load_config(configs["population"]), show_progress=False) as agent:
        with pytest.raises(grpc.RpcError) as e:
            agent.pull_flags()  # the interrupted run delivers nothing
    assert e.value.code() == grpc.StatusCode.NOT_FOUND

    with Operator.connect(site.address, pki) as op:
        again = op.start_run("pilot", REFERENCE_DATE)
        assert op.watch(again) == "done"
    keys = flag_keys(site.database, again)
    assert keys and len(keys) == len(set(keys))
    for d, config in configs.items():
        with Agent(load_config(config), show_progress=False) as agent:
            pulled = agent.pull_flags()
        assert len(pulled) == sum(1 for k in keys if k[0] == d)
        assert {f.run_id for f in pulled} <= {again}
    _verify_audit(site, pki, tmp_path)


def test_kill_9_during_flag_delivery_loses_no_flag_and_repeats_none(site, pki, scenario, secret_file, tmp_path):
    configs = upload_all(site, pki, scenario, secret_file, tmp_path)
    with Operator.connect(site.address, pki) as op:
        run_id = op.start_run("pilot", REFERENCE_DATE)
        assert op.watch(run_id) == "done"
    per_department = query(site.database, "select department, count(*) from flags where run_id = :r "
                           "group by department order by count(*) desc", r=run_id)
    department, expected = per_department[0]
    assert expected >= 2
    site.kill()
    mark = tmp_path / "fault"
    site.start(env={"FEDLINK_FAULT_PAUSE": "flags.delivering", "FEDLINK_FAULT_FILE": str(mark)})
    out = tmp_path / "worklist.csv"
    agent = subprocess.Popen([*FEDLINK, "agent", "flags", "--config", str(configs[department]), "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: mark.exists(), "the delivery to be under way")
        site.kill()  # one flag sent, the rest not
        assert not out.exists()  # nothing written from a partial delivery
        site.start()
        _, err = agent.communicate(timeout=180)
    finally:
        agent.kill()
    assert agent.returncode == 0, err
    assert "retrying in" in err and "pulled again whole" in " ".join(err.split())
    with out.open(encoding="utf-8-sig") as fh:
        rows = [(r["record_id"], r["need"]) for r in csv.DictReader(fh)]
    assert len(rows) == expected and len(set(rows)) == expected
    _verify_audit(site, pki, tmp_path)


def _verify_audit(site, pki, tmp_path) -> None:
    """The audit log survived every kill whole: it verifies end to end."""
    from fedlink.officer import Officer, verify_export

    before = scalar(site.database, "select count(*) from audit_events")
    with Officer.connect(site.address, pki) as officer:
        officer.export(tmp_path / "audit")
    from fedlink.audit import load_log_key, vkey_path

    verified = verify_export(tmp_path / "audit", load_log_key(vkey_path(site.audit_key)))
    assert verified.checkpoint.size >= before  # every event before the export (which adds its own read event)
