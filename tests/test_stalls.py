"""A run whose worker thread is alive but stuck, with a real coordinator
process: a phase blocked by a fault hook (FEDLINK_FAULT_PAUSE, server/faults.py)
reports no progress for `--run-stall-seconds`, and the run is failed with that
reason, audited, its watchers told; the project is free for the next run, and
the stuck worker's result, when it wakes, is discarded, never stored over the
newer run."""
from __future__ import annotations

import json

from conftest import REFERENCE_DATE
from dbutil import query, scalar
from fedlink.operator import Operator
from procs import CoordinatorProcess, wait_for
from test_overlap import uploaded  # noqa: F401 - the fixture


def test_a_stuck_run_is_failed_and_its_late_result_discarded(uploaded, tmp_path, pki):  # noqa: F811
    mark = tmp_path / "fault"
    site = CoordinatorProcess(tmp_path, pki, uploaded, args=("--run-stall-seconds", "2"), env={
        "FEDLINK_FAULT_PAUSE": "run.compare", "FEDLINK_FAULT_PAUSE_ONCE": "1", "FEDLINK_FAULT_FILE": str(mark),
        "FEDLINK_FAULT_PAUSE_S": "8"})
    try:
        with Operator.connect(site.address, pki) as op:
            stuck = op.start_run("pilot", REFERENCE_DATE)
            assert op.watch(stuck) == "failed"  # the watch ends, though the worker is still blocked
            assert mark.read_text() == "run.compare\n"
            state, error = query(uploaded, "select state, error from runs where run_id = :r", r=stuck)[0]
            assert state == "failed" and error.startswith("no progress in phase compare for 2 s")
            (body,), = query(uploaded, "select body from audit_events where kind = 'run.failed'")
            assert json.loads(body)["details"]["stalled_phase"] == "compare"
            newer = op.start_run("pilot", REFERENCE_DATE)  # the project is free again
            assert op.watch(newer) == "done"
        wait_for(lambda: f"run {stuck} was ended while it computed" in site.log.read_text(),
                 "the stuck worker to wake and have its result discarded", limit=60, every=0.2)
        assert query(uploaded, "select state from runs where run_id = :r", r=stuck) == [("failed",)]
        assert scalar(uploaded, "select count(*) from flags where run_id = :r", r=stuck) == 0
        assert scalar(uploaded, "select count(*) from links where run_id = :r", r=stuck) == 0
        assert scalar(uploaded, "select count(*) from flags where run_id = :r", r=newer) > 0
        assert scalar(uploaded, "select count(*) from audit_events where kind = 'run.done'") == 1
    finally:
        site.kill()
