"""The partitioned Dask pass (dask://...?storage=): workers read only their partition files, and the
links and persons are the in-process engine's, on a real local cluster of two worker processes."""

from __future__ import annotations

import re

import dask
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from bench.synthetic_filters import population
from server.blocking.params import LshParams
from server.engine import DaskEngine, LocalEngine, engine_from_url
from server.engine.partitioned import PartitionedPassFailed
from server.matching import group_records

pytestmark = pytest.mark.timeout(180)

# Lowered cuts, so that at this size the big department pairs are blocked and the small ones exact.
CUTS = {"exact_upto": 2000 * 2000, "exact_depth": 10}


def _cluster(**nanny):
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=None, worker_dashboard_address=None, **nanny)


@pytest.fixture(scope="module")
def departments():
    filters, _ = population(2500, departments=4, max_flip=0.12, seed=11)
    filters[3] = filters[3][:900]  # one small department: its pairs are compared exactly
    return filters


@pytest.fixture(scope="module")
def cluster(departments):
    LocalEngine("auto", **CUTS).compare_all(departments, {(0, 1): 0.8, (0, 3): 0.8})  # numba's cache, first
    with _cluster() as cluster:
        yield cluster


def _thresholds(departments):
    return {(a, b): 0.75 + 0.02 * (a + b) for a in range(len(departments)) for b in range(a + 1, len(departments))}


def assert_same(got, want):
    assert got.keys() == want.keys()
    for pair in want:
        for field in ("left", "right", "score"):
            a, b = getattr(got[pair], field), getattr(want[pair], field)
            assert a.dtype == b.dtype, (pair, field)
            np.testing.assert_array_equal(a, b, err_msg=f"{pair} {field}")


def _block(url: str) -> tuple[int, int]:
    d, b = re.search(r"/d(\d+)-b(\d+)\.npy$", url).groups()
    return int(d), int(b)


def test_links_and_persons_equal_the_in_process_engine_and_each_task_reads_its_partition(
        cluster, departments, tmp_path):
    thresholds = _thresholds(departments)
    want = LocalEngine("auto", **CUTS).compare_all(departments, thresholds)
    engine = DaskEngine(cluster.scheduler_address, blocking="auto", storage=str(tmp_path / "parts"),
                        block_rows=700, **CUTS)
    seen = []
    with engine:
        got = engine.compare_all(departments, thresholds, progress=lambda d, t: seen.append((d, t)))
        workers = set(engine.connect().scheduler_info()["workers"])
    assert_same(got, want)
    sizes = [len(f) for f in departments]
    assert sum(len(p) for p in got.values()) > 6000  # most of the ~2,000 shared persons per pair are linked
    assert np.array_equal(group_records(sizes, got), group_records(sizes, want))  # the same persons
    assert engine.stats.pairs_compared > 0 and engine.stats.calls == len(thresholds)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1][0] == seen[-1][1]

    reports = engine.last_pass.reads
    kinds = {r["task"] for r in reports}
    assert kinds == {"keys", "candidates", "scores", "exact"}
    assert {r["worker"] for r in reports} <= workers
    for r in reports:
        filter_files = [u for u in r["read"] if isinstance(u, str) and "/filters/" in u]
        if r["task"] == "keys":  # one block's filters
            assert len(r["read"]) == 1 and len(filter_files) == 1
        elif r["task"] == "candidates":  # only its band range of the key files, no filters
            assert not filter_files and len(r["read"]) == 3 * 4  # three blocked departments of 4 blocks
            assert all("/keys/" in u and (b0, b1) == tuple(r["bands"]) for u, b0, b1 in r["read"])
        else:  # its two blocks' filters, and (blocked) its group of every slice's candidates
            assert len(filter_files) == 2 and _block(filter_files[0])[0] < _block(filter_files[1])[0]
            slices = [x for x in r["read"] if not isinstance(x, str)]
            assert all("/candidates/" in u for u, _, _ in slices)
            assert (r["task"] == "exact") == (not slices)
    exact = {_block(r["read"][1])[0] for r in reports if r["task"] == "exact"}
    assert exact == {3}  # the small department's pairs, as the local engine chose
    assert not any((tmp_path / "parts").iterdir())  # the pass's files are gone


def test_lsh_parameters_and_the_url(cluster, departments, tmp_path):
    port = cluster.scheduler_address.rsplit(":", 1)[1]
    engine = engine_from_url(f"dask+lsh://127.0.0.1:{port}?bands=60&rows=14&max_bucket=3&"
                             f"storage={tmp_path}&block=1000")
    thresholds = {(0, 1): 0.7, (1, 2): 0.8}
    try:
        got = engine.compare_all(departments, thresholds)
    finally:
        engine.close()
    local = LocalEngine(LshParams(bands=60, rows=14, max_bucket=3))
    want = local.compare_all(departments, thresholds)
    assert_same(got, want)
    assert engine.stats.buckets_skipped == local.stats.buckets_skipped > 0  # max_bucket decided alike
    assert engine.stats.largest_bucket == local.stats.largest_bucket
    for bad, why in (("?block=10", "block needs storage"), ("?storage=", "storage needs"),
                     ("?storage=/x&block=0", "block must be positive"), ("?storage=/x&rows=3", "need dask\\+lsh")):
        with pytest.raises(ValueError, match=why):
            engine_from_url(f"dask://127.0.0.1:{port}{bad}")


def test_a_worker_killed_mid_pass_has_its_tasks_rerun_and_the_links_are_unchanged(departments, tmp_path):
    died = tmp_path / "died"
    thresholds = _thresholds(departments)
    want = LocalEngine("auto", **CUTS).compare_all(departments, thresholds)
    # The first candidates task ends its worker process (server/faults.py); the nanny starts another.
    with _cluster(env={"FEDLINK_FAULT_WORKER_EXIT": str(died)}) as cluster, \
            DaskEngine(cluster.scheduler_address, blocking="auto", storage=str(tmp_path / "parts"),
                       block_rows=700, **CUTS) as engine:
        got = engine.compare_all(departments, thresholds)
    assert died.exists()  # a worker did die mid-pass
    assert_same(got, want)


def test_a_task_that_kills_every_worker_it_runs_on_fails_the_pass_with_the_reason(departments, tmp_path):
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            _cluster(env={"FEDLINK_FAULT_WORKER_EXIT_ALWAYS": "1"}) as cluster, \
            DaskEngine(cluster.scheduler_address, blocking=LshParams(bands=8, rows=10),
                       storage=str(tmp_path / "parts"), block_rows=1000) as engine:
        with pytest.raises(PartitionedPassFailed, match=r"failed: KilledWorker: .*candidates_task"):
            engine.compare_all(departments[:2], {(0, 1): 0.8})
    assert not any((tmp_path / "parts").iterdir())  # nothing left behind


def test_partition_files_through_an_fsspec_url(departments):
    # fsspec's in-memory filesystem stands in for an object store (s3://...): the same calls, by URL.
    from server.engine.partitions import read_array, read_leading, remove, write_partitions, write_rows

    parts = write_partitions("memory://fedlink/pass-t", departments[:2], 1000)
    assert parts.sizes() == [len(departments[0]), len(departments[1])]
    assert [b.rows for b in parts.blocks[0]] == [1000, 1000, len(departments[0]) - 2000]
    np.testing.assert_array_equal(read_array(parts.blocks[0][1].url), departments[0][1000:2000])
    keys = np.arange(5 * 7, dtype=np.uint32).reshape(5, 7)
    write_rows("memory://fedlink/pass-t/k.npy", keys.shape, np.uint32, [keys[:2], keys[2:]])
    np.testing.assert_array_equal(read_leading("memory://fedlink/pass-t/k.npy", 1, 4), keys[1:4])
    with pytest.raises(ValueError, match="wrote 14 values for shape"):
        write_rows("memory://fedlink/pass-t/short.npy", keys.shape, np.uint32, [keys[:2]])
    remove("memory://fedlink/pass-t")
