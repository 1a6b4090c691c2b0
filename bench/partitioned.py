"""The link pass in process and on a partitioned Dask cluster, side by side in one run.

    python -m bench.partitioned --persons 100000 [--work DIR] [--block 100000] [--seed 0]

A synthetic population (``bench.synthetic_filters.population``: six
departments, each holding ~90% of the persons) is saved as one .npy file a
department.  Then, each in a fresh process (the coordinator), so that its
peak memory is its own:

- ``local``: the departments loaded, ``LocalEngine("auto").compare_all``
  over all 15 department pairs at the project's floor (0.6): the run's
  compare (server/pipeline/increments.py);
- ``dask``: a local cluster of two worker processes (one thread each,
  started here); the coordinator streams each department from its file
  into partitions of ``--block`` records (as it would from its store,
  never holding a department) and runs ``DaskEngine.compare_partitions``
  (server/engine/partitioned.py).

Printed (JSON): link seconds and the coordinator's peak resident memory
(VmHWM) for both, their ratios, the Dask pass's per-task costs (seconds,
peak worker memory), and whether every pair's scored pairs are identical
(exit 1 when not). The workers' memory is not the coordinator's: it is
printed apart.
"""
from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.load import _memory_mib
from bench.synthetic_filters import population
from fedlink.schema import LinkageSchema

FLOOR = LinkageSchema().threshold


def _thresholds(n: int) -> dict[tuple[int, int], float]:
    return {pair: FLOOR for pair in itertools.combinations(range(n), 2)}


def _save_results(path: Path, pairs) -> None:
    arrays = {}
    for (a, b), p in pairs.items():
        arrays.update({f"{a}-{b}-left": p.left, f"{a}-{b}-right": p.right, f"{a}-{b}-score": p.score})
    np.savez(path, **arrays)


def _child_local(work: Path) -> dict:
    from server.blocking.params import LshParams
    from server.engine import LocalEngine

    files = sorted((work / "population").glob("d*.npy"))
    filters = [np.load(f) for f in files]
    # Numba's kernels loaded (or compiled) first, as the Dask workers' are when the client connects.
    for warm in (LocalEngine(), LocalEngine(LshParams(bands=4, rows=8))):
        warm.compare_all([f[:200] for f in filters[:2]], {(0, 1): FLOOR})
    before = _peak_rss_mib_self()
    start = time.perf_counter()
    pairs = LocalEngine("auto").compare_all(filters, _thresholds(len(filters)))
    seconds = time.perf_counter() - start
    _save_results(work / "local.npz", pairs)
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(_peak_rss_mib_self(), 1),
            "rss_before_mib": round(before, 1), "links": sum(len(p) for p in pairs.values())}


def _child_dask(work: Path, scheduler: str, block: int) -> dict:
    from server.engine import DaskEngine
    from server.engine.partitions import Partitions, new_root, read_leading, remove, write_department

    files = sorted((work / "population").glob("d*.npy"))
    engine = DaskEngine(scheduler, blocking="auto", storage=str(work / "storage"), block_rows=block)
    engine.connect()
    before = _peak_rss_mib_self()
    start = time.perf_counter()
    root = new_root(engine.storage)
    blocks = []
    for d, f in enumerate(files):
        rows, words = np.load(f, mmap_mode="r").shape
        blocks.append(write_department(root, d, (read_leading(str(f), s, min(s + block, rows))
                                                 for s in range(0, max(rows, 1), block))))
    written = time.perf_counter() - start
    pairs = engine.compare_partitions(Partitions(root, words, tuple(blocks)), _thresholds(len(files)))
    seconds = time.perf_counter() - start
    remove(root)
    reports = engine.last_pass.reads
    engine.close()
    _save_results(work / "dask.npz", pairs)
    return {"seconds": round(seconds, 2), "write_seconds": round(written, 2),
            "peak_rss_mib": round(_peak_rss_mib_self(), 1), "rss_before_mib": round(before, 1),
            "links": sum(len(p) for p in pairs.values()), "tasks": _task_costs(reports)}


def _task_costs(reports: list[dict]) -> dict:
    """Per kind of task: how many, their summed and largest seconds (worker time, one thread each)."""
    out = {}
    for kind in ("keys", "candidates", "scores", "exact"):
        seconds = [r["seconds"] for r in reports if r["task"] == kind]
        if seconds:
            out[kind] = {"tasks": len(seconds), "seconds": round(sum(seconds), 2), "max_s": round(max(seconds), 2),
                         "candidates": sum(r.get("candidates", 0) for r in reports if r["task"] == kind)}
    return out


def _peak_rss_mib_self() -> float:
    import os

    return _memory_mib(os.getpid())


def _identical(work: Path) -> bool:
    a, b = np.load(work / "local.npz"), np.load(work / "dask.npz")
    return sorted(a.files) == sorted(b.files) and all(
        a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a.files)


def _run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.partitioned", *args], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.partitioned", description=__doc__.split("\n")[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--block", type=int, default=100_000, help="records per filter partition")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="folder for the population and partitions")
    parser.add_argument("--child", choices=["local", "dask"], help=argparse.SUPPRESS)
    parser.add_argument("--scheduler", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = _child_local(args.work) if args.child == "local" else \
            _child_dask(args.work, args.scheduler, args.block)
        print(json.dumps(result))
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="fedlink-partitioned-"))
    (work / "population").mkdir(parents=True, exist_ok=True)
    filters, _ = population(args.persons, seed=args.seed)
    for d, f in enumerate(filters):
        np.save(work / "population" / f"d{d}.npy", f)
    records = sum(len(f) for f in filters)
    del filters
    local = _run_child(["--child", "local", "--work", str(work)])
    dask = _run_dask(work, args.block)
    same = _identical(work)
    print(json.dumps({
        "persons": args.persons, "records": records, "block": args.block, "floor": FLOOR,
        "local": local, "dask": dask, "identical": same,
        "time_ratio_dask_over_local": round(dask["seconds"] / local["seconds"], 3),
        "coordinator_peak_ratio_dask_over_local": round(dask["peak_rss_mib"] / local["peak_rss_mib"], 3),
    }, indent=1))
    return 0 if same else 1


def _run_dask(work: Path, block: int) -> dict:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, worker_dashboard_address=None) as cluster:
        result = _run_child(["--child", "dask", "--work", str(work), "--scheduler", cluster.scheduler_address,
                             "--block", str(block)])
        with cluster.get_client() as client:
            result["worker_peak_rss_mib"] = client.run(_peak_rss_mib_self)
    return result


if __name__ == "__main__":
    sys.exit(main())
