"""Two coordinators on one database, with real processes: the chaos run's
findings replayed. On SQLite the second is refused at start (naming the
database and the first one's pid), so it can never wipe a finishing run's
flags; on PostgreSQL both serve, the second's recovery leaves the first's run
alone, a project never runs twice at once, a schedule fires once, every
audited call on either gets its own sequence number, and a run whose
coordinator was killed is ended by the other once the lease expires. A second
coordinator on a taken address fails to bind (no SO_REUSEPORT)."""
from __future__ import annotations

import json
import subprocess
import threading
import time

import grpc
import pytest

from agents.client import Agent
from agents.config import load_config
from conftest import REFERENCE_DATE
from dbutil import BACKEND, new_database, query, scalar
from fedlink.audit import load_log_key, vkey_path
from fedlink.officer import Officer, verify_export
from fedlink.operator import Operator
from fedlink.schema import Project
from procs import FEDLINK, CoordinatorProcess, agent_toml, free_port, wait_for

DEPARTMENTS = ("population", "civil_affairs", "medical_insurance")
postgresql_only = pytest.mark.skipif(BACKEND != "postgresql", reason="coordinators share PostgreSQL only")
sqlite_only = pytest.mark.skipif(BACKEND != "sqlite", reason="the file lock is SQLite's")


def serve_args(database, port: int, pki, *extra: str) -> list[str]:
    return [*FEDLINK, "coordinator", "serve", "--listen", f"127.0.0.1:{port}", "--pki", str(pki),
            "--database", str(database), *extra]


@pytest.fixture
def uploaded(tmp_path, pki, database, scenario, secret_file):
    """A coordinator (killed at the end) with a project every department uploaded to; stopped again."""
    first = CoordinatorProcess(tmp_path, pki, database)
    with Operator.connect(first.address, pki) as op:
        op.create_project(Project.default("pilot", reference_date=REFERENCE_DATE))
    for d in DEPARTMENTS:
        config = agent_toml(tmp_path, pki, d, first.address, scenario / f"{d}.csv", secret_file, batch_size=200)
        with Agent(load_config(config), show_progress=False) as agent:
            agent.upload()
    first.stop()
    return database


def flags_of(database, run_id: str) -> int:
    return scalar(database, "select count(*) from flags where run_id = :r", r=run_id)


def test_a_second_coordinator_never_wipes_a_finishing_run(uploaded, tmp_path, pki):
    """The finding: B started while A stored a run; B's recovery failed the run and deleted its flags."""
    mark = tmp_path / "fault"
    a = CoordinatorProcess(tmp_path, pki, uploaded, env={
        "FEDLINK_FAULT_PAUSE": "run.finishing", "FEDLINK_FAULT_FILE": str(mark),
        # long enough for B to start and be looked at while A holds its run: 6 s was not, once, on PostgreSQL
        # with three test workers on two CPUs (B's start-up took longer and A finished first)
        "FEDLINK_FAULT_PAUSE_S": "20"})
    try:
        with Operator.connect(a.address, pki) as op:
            run_id = op.start_run("pilot", REFERENCE_DATE)
        wait_for(lambda: mark.exists(), "the run to have stored its flags")
        stored = flags_of(uploaded, run_id)
        assert stored > 0
        port = free_port()
        if BACKEND == "sqlite":
            second = subprocess.run(serve_args(uploaded, port, pki), capture_output=True, text=True, timeout=60)
            assert second.returncode == 2, second.stderr
            said = " ".join(second.stderr.split())
            assert f"the database {uploaded} is in use by another coordinator (pid {a.pid}" in said
            assert "Traceback" not in second.stderr
        else:
            (tmp_path / "b").mkdir()
            b = CoordinatorProcess(tmp_path / "b", pki, uploaded, port=port, audit_key=a.audit_key)
            try:  # B serves reads while A's run is still its own
                assert query(uploaded, "select state from runs where run_id = :r", r=run_id) == [("running",)]
                assert flags_of(uploaded, run_id) == stored
            finally:
                b.stop()
        with Operator.connect(a.address, pki) as op:
            assert op.watch(run_id) == "done"
        assert flags_of(uploaded, run_id) == stored
        assert scalar(uploaded, "select count(*) from audit_events where kind = 'run.failed'") == 0
    finally:
        a.kill()


def test_a_second_coordinator_on_a_taken_address_fails_to_bind(tmp_path, pki, database):
    a = CoordinatorProcess(tmp_path, pki, database)
    try:
        other = new_database(tmp_path, "other")
        second = subprocess.run(serve_args(other, a.port, pki), capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stderr
        assert f"cannot listen on 127.0.0.1:{a.port}" in " ".join(second.stderr.split())
        assert "Traceback" not in second.stderr
    finally:
        a.kill()


@sqlite_only
def test_the_lock_goes_with_the_process_even_after_kill_9(tmp_path, pki, database):
    a = CoordinatorProcess(tmp_path, pki, database)
    a.kill()
    a.start()  # the kernel dropped the flock with the process: no stale lock to clear by hand
    assert a.proc.poll() is None
    a.kill()


@postgresql_only
def test_two_coordinators_never_run_one_project_twice_at_once(uploaded, tmp_path, pki):
    a = CoordinatorProcess(tmp_path, pki, uploaded)
    (tmp_path / "b").mkdir()
    b = CoordinatorProcess(tmp_path / "b", pki, uploaded, audit_key=a.audit_key)
    try:
        for _ in range(3):
            outcomes, barrier = [], threading.Barrier(2)

            def start(c):
                with Operator.connect(c.address, pki) as op:
                    barrier.wait()
                    try:
                        outcomes.append(("started", op.start_run("pilot", REFERENCE_DATE), c))
                    except grpc.RpcError as e:
                        outcomes.append((e.code(), e.details(), c))

            threads = [threading.Thread(target=start, args=(c,)) for c in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            started = [o for o in outcomes if o[0] == "started"]
            refused = [o for o in outcomes if o[0] != "started"]
            assert len(started) == 1 and len(refused) == 1, outcomes
            assert refused[0][0] == grpc.StatusCode.FAILED_PRECONDITION and "still going" in refused[0][1]
            with Operator.connect(started[0][2].address, pki) as op:
                assert op.watch(started[0][1]) == "done"
        numbers = [n for (n,) in query(uploaded, "select number from runs order by number")]
        assert numbers == [1, 2, 3]
    finally:
        a.kill()
        b.kill()


@postgresql_only
def test_a_schedule_fires_once_from_the_oldest_lease(uploaded, tmp_path, pki):
    a = CoordinatorProcess(tmp_path, pki, uploaded, args=("--schedule-poll", "0.3"))
    (tmp_path / "b").mkdir()
    b = CoordinatorProcess(tmp_path / "b", pki, uploaded, audit_key=a.audit_key, args=("--schedule-poll", "0.3"))
    try:
        leases = [i for (i,) in query(uploaded, "select instance_id from coordinator_leases order by started_at")]
        assert len(leases) == 2
        with Operator.connect(b.address, pki) as op:
            op.set_schedule("pilot", "1mo", day=1, at="02:00", start="2025-06-01", start_now=True)
        started = wait_for(lambda: query(uploaded, "select body from audit_events where kind = 'run.start'"),
                           "the scheduled run")
        time.sleep(3)  # ten polls of each coordinator: a double fire would have happened by now
        started = [json.loads(b) for (b,) in query(uploaded, "select body from audit_events where kind = 'run.start'")]
        assert len(started) == 1
        assert started[0]["actor"] == "coordinator:scheduler" and started[0]["details"]["owner"] == leases[0]
    finally:
        a.kill()
        b.kill()


@postgresql_only
def test_audited_calls_on_two_coordinators_get_one_sequence(uploaded, tmp_path, pki):
    """The finding: a quarter of audited calls failed with UNIQUE constraint failed: audit_events.seq."""
    a = CoordinatorProcess(tmp_path, pki, uploaded)
    (tmp_path / "b").mkdir()
    b = CoordinatorProcess(tmp_path / "b", pki, uploaded, audit_key=a.audit_key)
    failures = []

    def hammer(c):
        with Operator.connect(c.address, pki) as op:
            for _ in range(25):
                try:
                    op.schedule("pilot")  # GetSchedule: one audit event each
                except grpc.RpcError as e:
                    failures.append(e.code())

    try:
        before = scalar(uploaded, "select count(*) from audit_events")
        threads = [threading.Thread(target=hammer, args=(c,)) for c in (a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert failures == []
        seqs = [s for (s,) in query(uploaded, "select seq from audit_events order by seq")]
        assert seqs == list(range(len(seqs))) and len(seqs) == before + 100
        with Officer.connect(b.address, pki) as officer:
            officer.export(tmp_path / "audit")
        # One log under one key, whichever instance signed its checkpoints: the pinned key verifies it.
        assert verify_export(tmp_path / "audit", load_log_key(vkey_path(a.audit_key))).checkpoint.size >= len(seqs)
        # Both kept the signed state in one folder, in turns: it still matches the log at the next start.
        b.stop()
        a.stop()
        a.start()
        assert a.proc.poll() is None
    finally:
        a.kill()
        b.kill()


@postgresql_only
def test_a_coordinator_with_another_audit_key_is_refused(uploaded, tmp_path, pki):
    """Two keys on one log would leave agents pinning one of them unable to verify the other's checkpoints."""
    (tmp_path / "b").mkdir()
    second = subprocess.run(serve_args(uploaded, free_port(), pki, "--audit-key", str(tmp_path / "b" / "other.key")),
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 2, second.stderr
    said = " ".join(second.stderr.split())
    assert "this database's audit log is signed by" in said and "every coordinator of one database signs" in said
    assert "Traceback" not in second.stderr


@postgresql_only
def test_a_killed_coordinators_run_is_ended_by_the_other(uploaded, tmp_path, pki):
    mark = tmp_path / "fault"
    a = CoordinatorProcess(tmp_path, pki, uploaded, args=("--lease-seconds", "3"), env={
        "FEDLINK_FAULT_PAUSE": "run.rules", "FEDLINK_FAULT_FILE": str(mark)})
    (tmp_path / "b").mkdir()
    b = CoordinatorProcess(tmp_path / "b", pki, uploaded, audit_key=a.audit_key, args=("--lease-seconds", "3"))
    try:
        with Operator.connect(a.address, pki) as op:
            run_id = op.start_run("pilot", REFERENCE_DATE)
        wait_for(lambda: mark.exists(), "the run to be under way")
        time.sleep(4)  # longer than a lease: A's heartbeat keeps its run its own
        assert query(uploaded, "select state from runs where run_id = :r", r=run_id) == [("running",)]
        a.kill()
        with Operator.connect(b.address, pki) as op:
            wait_for(lambda: query(uploaded, "select state from runs where run_id = :r", r=run_id) != [("running",)],
                     "B to recover the dead coordinator's run", limit=30, every=0.2)
            assert op.watch(run_id) == "failed"
            again = op.start_run("pilot", REFERENCE_DATE)  # the project is free again
            assert op.watch(again) == "done"
        state, error = query(uploaded, "select state, error from runs where run_id = :r", r=run_id)[0]
        assert state == "failed" and error.startswith("interrupted")
    finally:
        a.kill()
        b.kill()
