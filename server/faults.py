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

A full disk, for SQLite: with FEDLINK_FAULT_SQLITE_PAGES=/tmp/pages, every
database connection the coordinator takes from its pool first sets
`PRAGMA max_page_count` to the number in that file (when it holds one), so
the store fails with SQLITE_FULL, exactly as on a full disk, once it would
grow past it; a test writes the file to fill the "disk" and empties it to
free space.

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


def sqlite_page_limit() -> int | None:
    """The page limit a fault test set for the SQLite store, if any."""
    path = os.environ.get("FEDLINK_FAULT_SQLITE_PAGES")
    if not path:
        return None
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None
