"""A coordinator on another machine sharing the PostgreSQL database, with real
processes: its lease row names a host that is not this one, so its pid cannot
be checked here. Its run is left alone while the lease is live, even after the
process is gone, and recovered by the other coordinator only once the lease
expired (FEDLINK_FAULT_MACHINE in server/faults.py places it elsewhere)."""
from __future__ import annotations

import pytest

from conftest import REFERENCE_DATE
from dbutil import BACKEND, query
from fedlink.operator import Operator
from procs import CoordinatorProcess, wait_for
from test_overlap import uploaded  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(BACKEND != "postgresql", reason="coordinators share PostgreSQL only")

NOW = "extract(epoch from clock_timestamp())"


def test_a_foreign_lease_is_respected_until_it_expires(uploaded, tmp_path, pki):  # noqa: F811
    mark = tmp_path / "fault"
    a = CoordinatorProcess(tmp_path, pki, uploaded, args=("--lease-seconds", "4"), env={
        "FEDLINK_FAULT_MACHINE": "another-host", "FEDLINK_FAULT_PAUSE": "run.rules", "FEDLINK_FAULT_FILE": str(mark)})
    (tmp_path / "b").mkdir()
    b = CoordinatorProcess(tmp_path / "b", pki, uploaded, args=("--lease-seconds", "4"), audit_key=a.audit_key)
    try:
        with Operator.connect(a.address, pki) as op:
            run_id = op.start_run("pilot", REFERENCE_DATE)
        wait_for(lambda: mark.exists(), "the run to be under way")
        a.kill()
        (instance, host), = query(uploaded, "select r.owner, l.host from runs r join coordinator_leases l "
                                            "on l.instance_id = r.owner where r.run_id = :r", r=run_id)
        assert host == "another-host"
        seen_live = 0
        while True:  # B's heartbeats (every 4/3 s) while A's lease runs out
            (now, expires, state), = query(uploaded, f"select {NOW}, l.expires_at, r.state from runs r join "
                                                     "coordinator_leases l on l.instance_id = r.owner "
                                                     "where r.run_id = :r", r=run_id) or [(None, None, None)]
            if now is None or now >= expires:
                break
            assert state == "running", "a live foreign lease's run was recovered"
            seen_live += 1
        assert seen_live > 0  # it was observed live, with its process already dead
        wait_for(lambda: query(uploaded, "select state from runs where run_id = :r", r=run_id) != [("running",)],
                 "B to recover the run once the lease expired", limit=30, every=0.2)
        state, error = query(uploaded, "select state, error from runs where run_id = :r", r=run_id)[0]
        assert state == "failed" and error.startswith("interrupted")
        with Operator.connect(b.address, pki) as op:
            assert op.watch(op.start_run("pilot", REFERENCE_DATE)) == "done"  # the project is free again
    finally:
        a.kill()
        b.kill()
