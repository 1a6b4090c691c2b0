"""Fault points for the fault tests (tests/test_faults.py), off unless the
environment turns them on:

    FEDLINK_FAULT_PAUSE=run.finishing FEDLINK_FAULT_FILE=/tmp/at fedlink coordinator serve ...

makes the coordinator, on reaching that point, write the point's name to
FEDLINK_FAULT_FILE and stop there (for FEDLINK_FAULT_PAUSE_S seconds, 120 by
default), so that a test can kill -9 the process at a known place. Points:

- `run.<phase>`: a run entering a phase, as its progress reports them:
  load, compare, cluster, rules, store;
- `run.finishing`: a run whose links and flags are committed but which is not
  yet marked done;
- `flags.delivering`: PullFlags, after the first flag was sent.

Nothing else changes: the real code runs, only later."""
from __future__ import annotations

import os
import time


def pause(point: str) -> None:
    wanted = os.environ.get("FEDLINK_FAULT_PAUSE", "")
    if not wanted or point not in wanted.split(","):
        return
    mark = os.environ.get("FEDLINK_FAULT_FILE")
    if mark:
        with open(mark, "a", encoding="utf-8") as fh:
            fh.write(point + "\n")
    time.sleep(float(os.environ.get("FEDLINK_FAULT_PAUSE_S", "120")))
