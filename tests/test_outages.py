"""The store blinks or fills, with real processes: a run storing its results
when PostgreSQL goes down, or when SQLite's "disk" fills (SQLITE_FULL, by
`PRAGMA max_page_count`: server/faults.py), still ends, failed with its real
reason, once the store is back; WatchRun ends; calls meanwhile are refused
with UNAVAILABLE (the database) or RESOURCE_EXHAUSTED (the store is full),
never INTERNAL; an agent retries the former and finishes."""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import grpc
import pytest

from agents.client import Agent
from agents.config import load_config
from conftest import REFERENCE_DATE
from dbutil import BACKEND, database_on, query
from fedlink.operator import Operator
from fedlink.schema import Project
from procs import FEDLINK, CoordinatorProcess, agent_toml, wait_for

DEPARTMENTS = ("population", "civil_affairs", "medical_insurance")
ROOT = Path(__file__).resolve().parents[1]


def postgres(command: str, folder: Path) -> str:
    return subprocess.run([str(ROOT / "scripts" / "postgres"), command, str(folder)], check=True,
                          capture_output=True, text=True, timeout=120).stdout.strip()


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of this test's own, to stop and start: the suite's server
    is shared by parallel workers, whose tests must not see this outage. Outside
    the 0700 pytest folder, since the server runs as the postgres user under root."""
    folder = Path(tempfile.mkdtemp(prefix="fedlink-outage-pg."))
    folder.chmod(0o755)
    try:
        url = postgres("start", folder / "cluster")
        yield folder / "cluster", database_on(url)
    finally:
        subprocess.run([str(ROOT / "scripts" / "postgres"), "stop", str(folder / "cluster")], capture_output=True,
                       timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def upload(site, pki, tmp_path, scenario, secret_file, departments=DEPARTMENTS) -> dict:
    configs = {}
    for d in departments:
        configs[d] = agent_toml(tmp_path, pki, d, site.address, scenario / f"{d}.csv", secret_file, batch_size=200)
        with Agent(load_config(configs[d]), show_progress=False) as agent:
            agent.upload()
    return configs


class Watcher(threading.Thread):
    """WatchRun followed to its end on a thread: the last event it saw."""

    def __init__(self, address: str, pki: Path, run_id: str):
        super().__init__(daemon=True)
        self.address, self.pki, self.run_id, self.last = address, pki, run_id, None
        self.start()

    def run(self):
        with Operator.connect(self.address, self.pki) as op:
            for event in op.progress(self.run_id):
                self.last = event


def run_state(database, run_id: str):
    return query(database, "select state, error from runs where run_id = :r", r=run_id)[0]


@pytest.mark.skipif(BACKEND != "postgresql", reason="the PostgreSQL pass's outage")
def test_postgresql_down_while_a_run_stores_its_results(tmp_path, pki, own_postgres, scenario, secret_file):
    cluster, database = own_postgres
    mark = tmp_path / "fault"
    site = CoordinatorProcess(tmp_path, pki, database, env={
        "FEDLINK_FAULT_PAUSE": "run.store", "FEDLINK_FAULT_FILE": str(mark), "FEDLINK_FAULT_PAUSE_S": "2"})
    try:
        with Operator.connect(site.address, pki) as op:
            op.create_project(Project.default("pilot", reference_date=REFERENCE_DATE))
        configs = upload(site, pki, tmp_path, scenario, secret_file, DEPARTMENTS[:2])
        with Operator.connect(site.address, pki) as op:
            run_id = op.start_run("pilot", REFERENCE_DATE)
        watcher = Watcher(site.address, pki, run_id)
        wait_for(lambda: mark.exists(), "the run to be about to store its results")
        postgres("pause", cluster)
        try:
            with Operator.connect(site.address, pki) as op, pytest.raises(grpc.RpcError) as e:
                op.schedule("pilot")
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "the coordinator's database (PostgreSQL 127.0.0.1:" in e.value.details()
            assert "unavailable" in e.value.details()
            # An agent that uploads meanwhile retries until the database is back.
            late = agent_toml(tmp_path, pki, DEPARTMENTS[2], site.address, scenario / f"{DEPARTMENTS[2]}.csv",
                              secret_file, batch_size=200, retries=8)
            agent = subprocess.Popen([*FEDLINK, "agent", "upload", "--config", str(late), "--quiet"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(4)  # the run's store transaction failed by now; its outcome waits for the database
            assert watcher.is_alive()
        finally:
            postgres("resume", cluster)
        _, err = agent.communicate(timeout=180)
        assert agent.returncode == 0, err
        assert "retrying in" in err and "database" in err
        watcher.join(60)
        assert not watcher.is_alive() and watcher.last.state == "failed"
        state, error = run_state(database, run_id)
        assert state == "failed" and "unavailable" in error and error == watcher.last.message
        with Operator.connect(site.address, pki) as op:
            assert op.watch(op.start_run("pilot", REFERENCE_DATE)) == "done"
        assert configs
    finally:
        site.kill()


@pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's full disk (max_page_count)")
def test_sqlite_full_while_a_run_stores_its_results(tmp_path, pki, database, scenario, secret_file):
    mark, pages = tmp_path / "fault", tmp_path / "pages"
    site = CoordinatorProcess(tmp_path, pki, database, env={
        "FEDLINK_FAULT_PAUSE": "run.store", "FEDLINK_FAULT_FILE": str(mark), "FEDLINK_FAULT_PAUSE_S": "2",
        "FEDLINK_FAULT_SQLITE_PAGES": str(pages)})
    try:
        with Operator.connect(site.address, pki) as op:
            op.create_project(Project.default("pilot", reference_date=REFERENCE_DATE))
        upload(site, pki, tmp_path, scenario, secret_file)
        with Operator.connect(site.address, pki) as op:
            run_id = op.start_run("pilot", REFERENCE_DATE)
        watcher = Watcher(site.address, pki, run_id)
        wait_for(lambda: mark.exists(), "the run to be about to store its results")
        with sqlite3.connect(database) as db:
            pages.write_text(str(db.execute("pragma page_count").fetchone()[0]))  # the disk is full
        watcher.join(60)  # the outcome fits in the pages the store has, or waits for space: either way it ends
        assert not watcher.is_alive() and watcher.last.state == "failed"
        state, error = run_state(database, run_id)
        assert state == "failed" and f"the coordinator's store (SQLite {database}) is full" in error
        assert error == watcher.last.message
        # Audited calls fill the last free space; then each is refused, naming the store, never INTERNAL.
        codes = []
        with Operator.connect(site.address, pki) as op:
            for _ in range(300):
                try:
                    op.schedule("pilot")
                except grpc.RpcError as e:
                    codes.append(e.code())
                    details = e.details()
                    break
        assert codes == [grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert f"GetSchedule: the coordinator's store (SQLite {database}) is full" in details
        pages.write_text("")  # space freed
        with Operator.connect(site.address, pki) as op:
            assert op.watch(op.start_run("pilot", REFERENCE_DATE)) == "done"
    finally:
        site.kill()
