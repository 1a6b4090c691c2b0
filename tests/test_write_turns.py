"""Upload batches are written in turns per department (server/admission.py),
on a real store: a department with twenty batches waiting does not go before
another department's one batch, and a refused batch is rolled back alone;
and, with a real coordinator process, one department's commit computing its
encoding health holds up no other department's upload.

The test holds the store's write transaction, so the writer, once it has
taken a round, waits for the store and every batch submitted meanwhile
queues up: what the next round takes is then fixed, whatever the threads' timing."""
from __future__ import annotations

import subprocess
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from agents.client import Agent
from agents.config import load_config
from conftest import REFERENCE_DATE
from dbutil import query
from fedlink.operator import Operator
from fedlink.schema import Project
from procs import FEDLINK, CoordinatorProcess, agent_toml, wait_for
from server.admission import WriteQueue
from server.store import Store


@pytest.fixture
def store(database):
    s = Store(database)
    with s.write() as conn:
        conn.execute(text("CREATE TABLE turns (n INTEGER PRIMARY KEY, department TEXT NOT NULL)"))
    yield s
    s.engine.dispose()


def _until_taken(queue: WriteQueue, limit_s: float = 60) -> None:
    """Until the writer has taken every batch submitted (it then waits for the store the test holds)."""
    deadline, tick = time.monotonic() + limit_s, threading.Event()
    while queue.waiting():
        assert time.monotonic() < deadline, f"the writer took no round in {limit_s} s: {queue.waiting()}"
        tick.wait(0.01)


def _insert(order: list, department: str, n: int | None = None):
    def work(conn):
        order.append(department)
        conn.execute(text("INSERT INTO turns (n, department) VALUES (:n, :d)"),
                     {"n": len(order) if n is None else n, "d": department})
        return department
    return work


def _stored(store: Store) -> list[tuple[int, str]]:
    with store.read() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT n, department FROM turns ORDER BY n"))]


def test_a_department_with_many_batches_waiting_cannot_starve_another(store):
    queue, order = WriteQueue(store, most_per_round=64), []
    with store.write():  # the store is busy: the writer's first round waits for it
        first = queue.submit("civil_affairs", _insert(order, "civil_affairs"))
        _until_taken(queue)
        flood = [queue.submit("population", _insert(order, "population")) for _ in range(20)]
        last = queue.submit("education", _insert(order, "education"))
        assert queue.waiting() == {"population": 20, "education": 1}
    assert [f.result(timeout=60) for f in (first, *flood, last)] == ["civil_affairs"] + ["population"] * 20 + [
        "education"]
    # Education came last, behind twenty batches of population, yet is written in the next round's
    # second turn: right after population's first batch, not after all twenty.
    assert order[:3] == ["civil_affairs", "population", "education"]
    assert order.count("population") == 20 and len(_stored(store)) == 22


def test_a_round_is_taken_in_turns_until_every_queue_is_empty(store):
    queue, order = WriteQueue(store, most_per_round=64), []
    with store.write():
        futures = [queue.submit("civil_affairs", _insert(order, "civil_affairs"))]
        _until_taken(queue)
        futures += [queue.submit(d, _insert(order, d)) for d in ["population"] * 3 + ["education"] * 2]
    for f in futures:
        f.result(timeout=60)
    assert order == ["civil_affairs", "population", "education", "population", "education", "population"]


def test_a_full_rounds_remainder_goes_round_the_uploaders(store):
    """Rounds of 4 over three uploaders of three batches each: the round's fourth turn moves on (a, then b,
    then c), so the batches interleave a b c a b c a b c instead of the first uploader taking every remainder."""
    queue, order = WriteQueue(store, most_per_round=4), []
    with store.write():
        futures = [queue.submit("held", _insert(order, "held"))]
        _until_taken(queue)
        futures += [queue.submit(u, _insert(order, u)) for u in ["load-0/population"] * 3 + [
            "load-1/population"] * 3 + ["load-0/education"] * 3]
    for f in futures:
        f.result(timeout=60)
    assert order == ["held"] + ["load-0/population", "load-1/population", "load-0/education"] * 3


def test_a_refused_batch_is_rolled_back_alone_and_its_round_lands(store):
    queue, order = WriteQueue(store, most_per_round=64), []
    with store.write():
        first = queue.submit("civil_affairs", _insert(order, "civil_affairs", n=100))
        _until_taken(queue)
        kept = queue.submit("population", _insert(order, "population", n=1))
        repeated = queue.submit("education", _insert(order, "education", n=1))  # n=1 again: refused
        after = queue.submit("housing", _insert(order, "housing", n=2))
    assert (first.result(timeout=60), kept.result(timeout=60), after.result(timeout=60)) == (
        "civil_affairs", "population", "housing")
    with pytest.raises(IntegrityError):
        repeated.result(timeout=60)
    assert _stored(store) == [(1, "population"), (2, "housing"), (100, "civil_affairs")]


def test_another_departments_upload_is_written_while_a_commit_computes_its_health(tmp_path, pki, database,
                                                                               scenario, secret_file):
    """Population's CommitUpload is held inside its encoding-health computation (fault point
    upload.health, the first time only); civil affairs then uploads in full, batches and commit,
    while population's commit is still held. Were the health computed inside the commit's write
    transaction, every other write (civil affairs' BeginUpload first) would wait for it."""
    mark = tmp_path / "paused"
    site = CoordinatorProcess(tmp_path, pki, database, env={
        "FEDLINK_FAULT_PAUSE": "upload.health", "FEDLINK_FAULT_FILE": str(mark), "FEDLINK_FAULT_PAUSE_S": "300",
        "FEDLINK_FAULT_PAUSE_ONCE": "1"})
    held = None
    try:
        with Operator.connect(site.address, pki) as op:
            op.create_project(Project.default("pilot", reference_date=REFERENCE_DATE))
        configs = {d: agent_toml(tmp_path, pki, d, site.address, scenario / f"{d}.csv", secret_file, batch_size=50)
                   for d in ("population", "civil_affairs")}
        held = subprocess.Popen([*FEDLINK, "agent", "upload", "--config", str(configs["population"]), "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(mark.exists, "population's commit to reach its health computation", every=0.05)
        with Agent(load_config(configs["civil_affairs"]), show_progress=False) as agent:
            summary = agent.upload()
        assert held.poll() is None, held.stderr.read()  # population's commit is still computing its health
        assert mark.read_text().split() == ["upload.health"]
        (state, count), = query(database, "select state, record_count from uploads where upload_id = :u",
                                u=summary.upload_id)
        assert state == "committed" and count == summary.record_count > 50  # more than one batch
        (population,), = query(database, "select state from uploads where department = 'population'")
        assert population == "open"
    finally:
        if held is not None:
            held.kill()
            held.wait()
        site.kill()
