"""DaskEngine on a real local Dask cluster (worker processes) equals LocalEngine."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from bench.scale import population
from server.blocking.params import LshParams
from server.engine import DaskEngine, LocalEngine, engine_from_url

pytestmark = pytest.mark.timeout(120)


def _worker_has_kernels() -> bool:
    return "server.matching" in sys.modules and "server.blocking" in sys.modules


@pytest.fixture(scope="module")
def cluster():
    # Compile (or load from numba's cache) here first, so the workers find the cache.
    LocalEngine().compare(*population(50, departments=2)[0], 0.8)
    LocalEngine(LshParams(bands=4, rows=8)).compare(*population(50, departments=2)[0], 0.8)
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def departments():
    filters, _ = population(3000, departments=4, max_flip=0.12, seed=9)
    return filters


def assert_same(a, b):
    np.testing.assert_array_equal(a.left, b.left)
    np.testing.assert_array_equal(a.right, b.right)
    np.testing.assert_array_equal(a.score, b.score)
    assert a.left.dtype == b.left.dtype and a.score.dtype == b.score.dtype


@pytest.mark.parametrize("blocking", [None, LshParams(bands=200, rows=18, seed=1)], ids=["exact", "lsh"])
def test_dask_engine_matches_local_engine(cluster, departments, blocking):
    local = LocalEngine(blocking)
    with DaskEngine(cluster.scheduler_address, blocking=blocking) as dask:
        workers = dask.connect().run(_worker_has_kernels)
        assert len(workers) == 2 and all(workers.values())
        total_links = 0
        for a, b in itertools.combinations(range(len(departments)), 2):
            left, right = departments[a], departments[b]
            seen = []
            got = dask.compare(left, right, 0.8, progress=lambda d, t, seen=seen: seen.append((d, t)))
            want = local.compare(left, right, 0.8)
            assert_same(got, want)
            total_links += len(got)
            done = [d for d, _ in seen]
            assert done == sorted(done) and done[-1] == len(left) * len(right)
            assert {t for _, t in seen} == {len(left) * len(right)}
        assert total_links > 6 * 2000  # most of the ~2400 shared persons per pair are linked
        # Another threshold, and the right side shorter than the left.
        assert_same(dask.compare(departments[0], departments[1][:500], 0.9),
                    local.compare(departments[0], departments[1][:500], 0.9))
        # Empty sides.
        assert len(dask.compare(departments[0][:0], departments[1], 0.8)) == 0
    if blocking is not None:
        assert dask.stats.pairs_compared >= local.stats.pairs_compared > 0


def test_dask_engine_from_url(cluster, departments):
    address = cluster.scheduler_address  # tcp://127.0.0.1:PORT
    port = address.rsplit(":", 1)[1]
    engine = engine_from_url(f"dask+lsh://127.0.0.1:{port}?bands=100&rows=16")
    try:
        got = engine.compare(departments[2], departments[3], 0.75)
    finally:
        engine.close()
    want = LocalEngine(LshParams(bands=100, rows=16)).compare(departments[2], departments[3], 0.75)
    assert_same(got, want)


def test_dask_url_chooses_exact_or_blocked_per_pair_as_the_local_default_does(cluster, departments):
    port = cluster.scheduler_address.rsplit(":", 1)[1]
    engine = engine_from_url(f"dask://127.0.0.1:{port}")
    # Lower the cut so that at this size the big pair is blocked and the small one exact.
    engine.exact_upto = 3000 * 1000
    engine.exact_depth = 10
    local = LocalEngine("auto", exact_upto=3000 * 1000, exact_depth=10)
    big, small = (departments[0], departments[1]), (departments[0], departments[1][:1000])
    try:
        for left, right in (big, small):
            assert_same(engine.compare(left, right, 0.8), local.compare(left, right, 0.8))
    finally:
        engine.close()
    assert local.params_for(len(big[0]), len(big[1])) is not None  # the big pair was blocked
    assert local.params_for(len(small[0]), len(small[1])) is None
    assert engine.stats.pairs_compared > 0 and local.stats.pairs_compared > 0
