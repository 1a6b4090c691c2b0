"""Fault points for the fault tests (tests/test_faults.py), off unless the
environment turns them on:

    FEDLINK_FAULT_PAUSE=run.finishing FEDLINK_FAULT_FILE=/tmp/at fedlink coordinator serve ...

makes the coordinator, on reaching that point, write the point's name to
FEDLINK_FAULT_FILE and stop there (for FEDLINK_FAULT_PAUSE_S seconds, 120 by
default), so that a test can kill -9 the process at a known place, or find
it stuck there (with FEDLINK_FAULT_PAUSE_ONCE=1 only the first time each
point is reached, so a later run goes through). Points:

- `run.<phase>`: a run entering a phase, as its progress reports them:
  load, compare, cluster, rules, store;
- `run.finishing`: a run whose links and flags are committed but which is not
  yet marked done;
- `flags.delivering`: PullFlags, after the first flag was sent;
- `upload.batch.<seq>`: UploadBatches, before batch <seq> is checked and
  queued (earlier batches of the stream are queued and go on to commit);
- `upload.health`: CommitUpload computing the encoding health of an upload
  (before its write transaction: other uploads' batches are written meanwhile).

A full disk, for SQLite: with FEDLINK_FAULT_SQLITE_PAGES=/tmp/pages, every
database connection the coordinator takes from its pool first sets
`PRAGMA max_page_count` to the number in that file (when it holds one), so
the store fails with SQLITE_FULL, exactly as on a full disk, once it would
grow past it; a test writes the file to fill the "disk" and empties it to
free space.

Nothing else changes: the real code runs, only later.

    FEDLINK_FAULT_MACHINE=elsewhere fedlink coordinator serve ...

makes the coordinator take its lease (server/ownership.py) as if it ran on
another machine named so: its peers on this machine cannot check its pid and
must wait for its lease to expire, as they would for a coordinator on another
host sharing the PostgreSQL database.

    FEDLINK_FAULT_FORK=civil_affairs:20 fedlink coordinator serve ...

makes the coordinator fork its log for one department (the witness tests'
split view): that department's agent is served checkpoints and consistency
proofs of a log whose event 20 differs, signed with the real audit key;
everyone else, and the coordinator's own checks, see the stored log. The
cosignatures it holds are served as they are, like a coordinator that forks
its log but not the witnesses' notes.

    FEDLINK_FAULT_WORKER_EXIT=/tmp/died  (in a Dask worker's environment)

makes the first candidates task of a partitioned pass (server/engine/partitioned.py)
that finds no file at that path create it and end its worker process at once
(os._exit), as a machine lost mid-run: the scheduler must re-run its tasks.
With FEDLINK_FAULT_WORKER_EXIT_ALWAYS=1 every candidates task ends its worker
(a task that cannot complete anywhere)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from fedlink import merkle


_paused: set[str] = set()


def pause(point: str) -> None:
    wanted = os.environ.get("FEDLINK_FAULT_PAUSE", "")
    if not wanted or point not in wanted.split(","):
        return
    if os.environ.get("FEDLINK_FAULT_PAUSE_ONCE") == "1":
        if point in _paused:
            return
        _paused.add(point)
    mark = os.environ.get("FEDLINK_FAULT_FILE")
    if mark:
        with open(mark, "a", encoding="utf-8") as fh:
            fh.write(point + "\n")
    time.sleep(float(os.environ.get("FEDLINK_FAULT_PAUSE_S", "120")))


def worker_exit_once() -> None:
    """End this (Dask worker) process the first time any worker gets here (module doc)."""
    if os.environ.get("FEDLINK_FAULT_WORKER_EXIT_ALWAYS") == "1":
        os._exit(1)
    mark = os.environ.get("FEDLINK_FAULT_WORKER_EXIT")
    if not mark:
        return
    try:
        os.close(os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(1)


def machine() -> str | None:
    """The machine identity a fault test gave this coordinator's lease, if any."""
    return os.environ.get("FEDLINK_FAULT_MACHINE") or None


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


@dataclass(frozen=True)
class Fork:
    department: str
    seq: int

    def view(self, tree: merkle.MerkleTree, department: str) -> merkle.MerkleTree:
        """The tree this department is shown: event `seq` replaced, once the log has it."""
        if department != self.department or tree.size <= self.seq:
            return tree
        leaves = [tree.leaf_hash_at(i) for i in range(tree.size)]
        leaves[self.seq] = merkle.leaf_hash(b"forked:" + leaves[self.seq])
        return merkle.MerkleTree.from_leaf_hashes(leaves)


def fork() -> Fork | None:
    """The fork FEDLINK_FAULT_FORK=department:seq asks for, if any."""
    wanted = os.environ.get("FEDLINK_FAULT_FORK", "")
    if not wanted:
        return None
    department, _, seq = wanted.partition(":")
    return Fork(department, int(seq or 0))
