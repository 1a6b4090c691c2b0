"""Tests for server.blocking (bit-sampling LSH) and the blocked local engine."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from bench.scale import pair_completeness, perturbed_pairs
from server.blocking.candidates import lsh_candidates
from server.blocking.keys import band_keys, band_positions
from server.blocking.params import BlockingStats, LshParams, candidate_probability
from server.blocking.scoring import score_candidates
from server.engine import DaskEngine, LocalEngine, engine_from_url
from server.matching import dice_reference, dice_scores_above, pack_filters


def random_filters(rng, n, fill=0.45, filter_bits=1024):
    return pack_filters(np.packbits(rng.random((n, filter_bits)) < fill, axis=1), filter_bits)


def unpacked(filters):
    return np.unpackbits(filters.astype(">u8").view(np.uint8), axis=1)


def brute_force_candidates(left, right, bands, rows, seed, max_bucket):
    """Every (i, j) sharing a key in some band whose bucket is small enough on both sides."""
    kl, kr = band_keys(left, bands, rows, seed), band_keys(right, bands, rows, seed)
    found = set()
    for b in range(bands):
        count_l, count_r = Counter(kl[b].tolist()), Counter(kr[b].tolist())
        for i, key in enumerate(kl[b].tolist()):
            if count_l[key] > max_bucket or count_r[key] > max_bucket:
                continue
            found.update((i, int(j)) for j in np.flatnonzero(kr[b] == key))
    return sorted(found)


# --- parameters ----------------------------------------------------------------


def test_default_parameters_follow_the_formula():
    p = LshParams()
    assert (p.rows, p.bands) == (26, 1200)
    # Dice 0.8 at 50% fill: s = 0.8; P = 1 - (1 - 0.8^26)^1200.
    assert p.probability(0.8, 0.5) == pytest.approx(1 - (1 - 0.8**26) ** 1200)
    assert p.probability(0.85, 0.5) > 0.999
    assert p.expected_fraction(0.5) < 1e-4
    assert candidate_probability(1.0, 20, 600) == 1.0
    assert candidate_probability(0.0, 20, 600) == 0.0


def test_for_threshold_meets_its_targets():
    for threshold in (0.75, 0.8, 0.85):
        p = LshParams.for_threshold(threshold)
        assert p.probability(threshold, 0.5) >= 0.999
        assert p.expected_fraction() <= 1e-3
        # Fewest bands: one band fewer misses the recall target.
        fewer = LshParams(bands=p.bands - 1, rows=p.rows)
        assert fewer.probability(threshold, 0.5) < 0.999
    assert LshParams.for_threshold(0.8).rows == 20
    big = LshParams.for_threshold(0.8, pairs=10**12)
    assert big.rows > 20 and big.expected_fraction() <= 2e-5


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="rows"):
        LshParams(rows=65)
    with pytest.raises(ValueError, match="rows"):
        LshParams(rows=0)
    with pytest.raises(ValueError, match="bands"):
        LshParams(bands=0)
    with pytest.raises(ValueError, match="max_bucket"):
        LshParams(max_bucket=0)


# --- keys and candidates ---------------------------------------------------------


def test_band_keys_are_the_sampled_bits():
    rng = np.random.default_rng(3)
    filters = random_filters(rng, 200)
    positions = band_positions(1024, 40, 13, seed=5)
    assert positions.shape == (40, 13)
    assert all(len(set(row)) == 13 for row in positions.tolist())
    keys = band_keys(filters, 40, 13, seed=5)
    assert keys.shape == (40, 200) and keys.dtype == np.uint32
    bits = unpacked(filters)
    for b in (0, 17, 39):
        expected = (bits[:, positions[b]].astype(np.uint64) << np.arange(13, dtype=np.uint64)).sum(axis=1)
        np.testing.assert_array_equal(keys[b], expected)
    # Other widths work too.
    narrow = pack_filters(np.packbits(rng.random((10, 128)) < 0.5, axis=1), 128)
    assert band_keys(narrow, 4, 31).shape == (4, 10)


def test_wide_band_keys_are_a_hash_of_the_sampled_bits():
    # Over 31 rows the bits no longer fit the 31-bit key: they are hashed.
    rng = np.random.default_rng(4)
    filters = random_filters(rng, 300)
    rows = 40
    positions = band_positions(1024, 6, rows, seed=2)
    keys = band_keys(filters, 6, rows, seed=2)
    bits = unpacked(filters)
    with np.errstate(over="ignore"):
        for b in range(6):
            value = (bits[:, positions[b]].astype(np.uint64) << np.arange(rows, dtype=np.uint64)).sum(axis=1)
            expected = (value * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(33)
            np.testing.assert_array_equal(keys[b], expected.astype(np.uint32))
    assert keys.max() < 2**31
    # Records with equal sampled bits share the key: a filter and its copy are candidates.
    left, right = filters[:50], filters[:50].copy()
    li, rj = lsh_candidates(left, right, bands=3, rows=48, seed=0)
    assert set(zip(li.tolist(), rj.tolist())) >= {(i, i) for i in range(50)}


@pytest.mark.parametrize("max_bucket", [3, 1000])
def test_candidates_match_brute_force(max_bucket):
    rng = np.random.default_rng(7)
    left = random_filters(rng, 300)
    right = np.concatenate([left[:120] ^ random_filters(rng, 120, fill=0.04), random_filters(rng, 150)])
    # A pattern many records share: buckets over max_bucket are skipped.
    left[200:230] = left[200]
    right[250:260] = left[200]
    stats = BlockingStats()
    li, rj = lsh_candidates(left, right, bands=50, rows=8, seed=1, max_bucket=max_bucket, stats=stats)
    assert li.dtype == np.int64 and rj.dtype == np.int64
    got = list(zip(li.tolist(), rj.tolist()))
    assert got == brute_force_candidates(left, right, 50, 8, 1, max_bucket)
    assert stats.pairs_compared == len(got) and stats.pairs_total == 300 * 270
    if max_bucket == 3:
        assert stats.buckets_skipped > 0 and stats.pairs_skipped > 0
    else:
        assert stats.buckets_skipped == 0


def test_pathological_buckets_are_skipped_and_counted():
    rng = np.random.default_rng(11)
    left, right, tl, tr, _ = perturbed_pairs(rng, 3000, 3000, 1000, dice=(0.85, 1.0))
    # 1500 identical "blank" records on each side: one bucket of 1500 x 1500 in every band.
    blank = random_filters(rng, 1)
    left = np.concatenate([left, np.repeat(blank, 1500, axis=0)])
    right = np.concatenate([right, np.repeat(blank, 1500, axis=0)])
    stats = BlockingStats()
    li, rj = lsh_candidates(left, right, bands=600, rows=20, max_bucket=1000, stats=stats)
    assert stats.buckets_skipped >= 600  # at least the blank bucket in every band
    assert stats.pairs_skipped >= 600 * 1500 * 1500
    assert not ((li >= 3000) & (rj >= 3000)).any()
    assert pair_completeness(li, rj, tl, tr, len(right)).all()
    assert stats.fraction < 2e-3


def test_empty_sides():
    rng = np.random.default_rng(0)
    filters = random_filters(rng, 10)
    empty = filters[:0]
    for left, right in ((empty, filters), (filters, empty), (empty, empty)):
        li, rj = lsh_candidates(left, right, bands=10, rows=8)
        assert li.shape == rj.shape == (0,)
        assert len(LocalEngine(LshParams(bands=10, rows=8)).compare(left, right, 0.8)) == 0


# --- quality at scale --------------------------------------------------------------


@pytest.fixture(scope="module")
def perturbed_20k():
    rng = np.random.default_rng(2024)
    return perturbed_pairs(rng, 20_000, 20_000, 10_000, fill=0.45, dice=(0.7, 1.0))


def test_pair_completeness_and_fraction_compared_at_20k(perturbed_20k):
    left, right, tl, tr, td = perturbed_20k
    # The true pairs' Dice spreads between 0.7 and 1.0.
    assert td.min() < 0.72 and td.max() > 0.98
    assert 0.3 < (td >= 0.8).mean() < 0.8
    p = LshParams()
    stats = BlockingStats()
    li, rj = lsh_candidates(left, right, bands=p.bands, rows=p.rows, seed=p.seed, stats=stats)
    hit = pair_completeness(li, rj, tl, tr, len(right))
    high = td >= 0.8
    assert high.sum() > 4000
    assert hit[high].mean() >= 0.995
    assert stats.pairs_total == 20_000 * 20_000
    assert stats.fraction <= 1e-3
    assert stats.pairs_compared == len(li)
    # Sorted by (left, right) and unique.
    codes = li * len(right) + rj
    assert (np.diff(codes) > 0).all()


def test_candidates_are_deterministic_for_a_seed(perturbed_20k):
    left, right = perturbed_20k[0][:5000], perturbed_20k[1]
    a = lsh_candidates(left, right, bands=200, rows=20, seed=4)
    b = lsh_candidates(left, right, bands=200, rows=20, seed=4)
    c = lsh_candidates(left, right, bands=200, rows=20, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert len(a[0]) != len(c[0]) or not np.array_equal(a[0], c[0])


def test_blocked_engine_is_the_exact_result_restricted_to_candidates(perturbed_20k):
    left, right = perturbed_20k[0][:6000], perturbed_20k[1][:8000]
    params = LshParams(bands=300, rows=18, seed=2)
    for threshold in (0.7, 0.75, 0.8, 0.9, 1.0):
        exact = dice_scores_above(left, right, threshold)
        engine = LocalEngine(blocking=params)
        blocked = engine.compare(left, right, threshold)
        li, rj = lsh_candidates(left, right, bands=300, rows=18, seed=2)
        keep = np.isin(exact.left * len(right) + exact.right, li * len(right) + rj)
        np.testing.assert_array_equal(blocked.left, exact.left[keep])
        np.testing.assert_array_equal(blocked.right, exact.right[keep])
        np.testing.assert_array_equal(blocked.score, exact.score[keep])
        assert blocked.score.dtype == np.float32 and blocked.left.dtype == np.int64
        assert engine.stats.pairs_compared == len(li)
        if threshold >= 0.8:
            assert len(blocked) >= 0.99 * len(exact)


def test_score_candidates_decides_like_the_exact_kernel():
    """Scores that round to the threshold in float32 pass only when the float64 Dice does."""
    rng = np.random.default_rng(5)
    left = random_filters(rng, 400, fill=0.3)
    right = np.concatenate([left ^ random_filters(rng, 400, fill=0.03), random_filters(rng, 100)])
    ref = dice_reference(left, right)
    li, rj = np.nonzero(ref >= 0)
    for threshold in np.unique(ref[ref > 0.5])[::37].tolist() + [0.0, 1.0, 1.5]:
        got = score_candidates(left, right, li, rj, threshold)
        rows, cols = np.nonzero(ref >= threshold)
        np.testing.assert_array_equal(got.left, rows)
        np.testing.assert_array_equal(got.right, cols)
        np.testing.assert_array_equal(got.score, ref[rows, cols].astype(np.float32))


# --- engines -----------------------------------------------------------------------


def test_progress_is_reported_and_optional(perturbed_20k):
    left, right = perturbed_20k[0][:3000], perturbed_20k[1][:3000]
    for engine in (LocalEngine(), LocalEngine(LshParams(bands=100, rows=16))):
        seen = []
        with_progress = engine.compare(left, right, 0.8, progress=lambda d, t, seen=seen: seen.append((d, t)))
        without = engine.compare(left, right, 0.8)
        np.testing.assert_array_equal(with_progress.left, without.left)
        np.testing.assert_array_equal(with_progress.score, without.score)
        assert len(seen) >= 2
        assert all(t == 3000 * 3000 for _, t in seen)
        done = [d for d, _ in seen]
        assert done == sorted(done) and done[-1] == 3000 * 3000


def test_default_engine_is_exact_for_small_pairs_and_blocked_for_large(perturbed_20k):
    left, right = perturbed_20k[0][:3000], perturbed_20k[1][:3000]
    exact = LocalEngine().compare(left, right, 0.8)
    blocked = LocalEngine(LshParams()).compare(left, right, 0.8)
    small = LocalEngine("auto", exact_upto=3000 * 3000, exact_depth=0).compare(left, right, 0.8)
    large = LocalEngine("auto", exact_upto=3000 * 3000 - 1, exact_depth=0).compare(left, right, 0.8)
    # One side small (n*m/(n+m) under exact_depth): exact, however many pairs.
    narrow = LocalEngine("auto", exact_upto=0).compare(left, right, 0.8)
    for got, want in ((small, exact), (large, blocked), (narrow, exact)):
        np.testing.assert_array_equal(got.left, want.left)
        np.testing.assert_array_equal(got.right, want.right)
        np.testing.assert_array_equal(got.score, want.score)
    with pytest.raises(ValueError):
        LocalEngine("sometimes")


def test_engine_from_url():
    default = engine_from_url("local")
    assert engine_from_url(None).name == "local" and default.auto and default.blocking == LshParams()
    exact = engine_from_url("local+exact")
    assert exact.name == "local" and exact.blocking is None and not exact.auto
    lsh = engine_from_url("local+lsh")
    assert lsh.name == "local+lsh" and lsh.blocking == LshParams()
    custom = engine_from_url("local+lsh?bands=900&rows=22&seed=3&max_bucket=50")
    assert custom.blocking == LshParams(bands=900, rows=22, seed=3, max_bucket=50)
    dask = engine_from_url("dask://127.0.0.1:8786")
    assert isinstance(dask, DaskEngine) and dask.address == "tcp://127.0.0.1:8786"
    assert dask.auto and dask.name == "dask"  # the same per-pair choice as "local"
    assert dask.params_for(10**6, 10**6) == default.params_for(10**6, 10**6) != None  # noqa: E711
    assert dask.params_for(3000, 3000) is None
    dask_exact = engine_from_url("dask+exact://127.0.0.1:8786")
    assert dask_exact.blocking is None and not dask_exact.auto
    dask_lsh = engine_from_url("dask+lsh://scheduler.example:9000?rows=18&bands=400")
    assert dask_lsh.blocking == LshParams(bands=400, rows=18)
    assert dask_lsh.address == "tcp://scheduler.example:9000"
    for bad in ("gpu", "local+lshx", "local+lsh?bands=x", "local+lsh?colour=1", "dask://nohost",
                "dask://127.0.0.1:8786?rows=3", "dask+exact://127.0.0.1:8786?rows=3", "dask+exact://x"):
        with pytest.raises(ValueError):
            engine_from_url(bad)


def test_run_stream_shows_pairs_compared_and_an_eta():
    # server.pipeline.link passes a progress callback to the engine: the operator's
    # run stream (WatchRun) gets pairs compared and an ETA within a compare.
    from bench.scale import population
    from server.pipeline.link import DepartmentRecords, link

    filters, _ = population(400, departments=3, seed=2)
    departments = [DepartmentRecords(f"d{k}", np.arange(len(f)), [b"%d" % i for i in range(len(f))], f, {})
                   for k, f in enumerate(filters)]
    events = []
    result = link(departments, 0.8, LocalEngine(), lambda *e: events.append(e))
    compare = [e for e in events if e[0] == "compare"]
    total = sum(len(a) * len(b) for a, b in ((filters[0], filters[1]), (filters[0], filters[2]),
                                                   (filters[1], filters[2])))
    assert all(t == total for _, _, t, _ in compare)
    done = [d for _, d, _, _ in compare]
    assert done == sorted(done) and done[-1] == total
    assert any("pairs compared, ETA" in message for *_, message in compare)
    assert result.labels.shape == (sum(len(f) for f in filters),)


@pytest.mark.parametrize("max_bucket", [1000, 3])
def test_multi_party_pass_equals_pair_by_pair(max_bucket):
    # One sort per band over every department gives each pair exactly the
    # links of the two-department pass (bucket sizes per department are the same).
    from server.blocking.multi import lsh_links_multi
    from server.blocking.scoring import lsh_links
    from bench.scale import population

    filters, _ = population(1500, departments=4, max_flip=0.12, seed=5)
    filters[2] = np.concatenate([filters[2], np.repeat(filters[2][:1], 5, axis=0)])  # a crowded bucket
    params = LshParams(bands=60, rows=12, seed=4, max_bucket=max_bucket)
    thresholds = {(0, 1): 0.8, (0, 2): 0.75, (1, 3): 0.85, (2, 3): 0.8}
    multi_stats, pair_stats = BlockingStats(), BlockingStats()
    multi = lsh_links_multi(filters, thresholds, params, stats=multi_stats)
    assert sorted(multi) == sorted(thresholds)
    for (a, b), t in thresholds.items():
        want = lsh_links(filters[a], filters[b], t, params, stats=pair_stats)
        np.testing.assert_array_equal(multi[(a, b)].left, want.left)
        np.testing.assert_array_equal(multi[(a, b)].right, want.right)
        np.testing.assert_array_equal(multi[(a, b)].score, want.score)
        assert len(want)
    for field in ("pairs_total", "buckets_skipped", "pairs_skipped"):
        assert getattr(multi_stats, field) == getattr(pair_stats, field), field
    # Counted once per slice of bands that scored it: at least the unique candidates.
    assert multi_stats.pairs_compared >= pair_stats.pairs_compared


@pytest.mark.parametrize("which", ["some", "none in one department", "all"])
@pytest.mark.parametrize("max_bucket", [1000, 3])
def test_multi_party_pass_of_changed_records_is_the_full_pass_restricted_to_them(max_bucket, which):
    # An incremental run's new pairs (server/pipeline/increments.py): the buckets, and which are
    # skipped for max_bucket, are those of all the records; only the pairs with a changed record are
    # kept. Only the buckets holding a changed record are sorted (_pack_hits): with max_bucket=3 the
    # crowded bucket is over-full and must be skipped as the full pass skips it.
    from server.blocking.multi import lsh_links_multi
    from bench.scale import population

    filters, _ = population(1500, departments=4, max_flip=0.12, seed=5)
    filters[2] = np.concatenate([filters[2], np.repeat(filters[2][:1], 5, axis=0)])  # a crowded bucket
    params = LshParams(bands=60, rows=12, seed=4, max_bucket=max_bucket)
    thresholds = {(0, 1): 0.8, (0, 2): 0.75, (1, 3): 0.85, (2, 3): 0.8}
    changed = [np.random.default_rng(k).random(len(f)) < 0.1 for k, f in enumerate(filters)]
    changed[2][-3:] = True  # in the crowded bucket
    if which == "none in one department":
        changed[1][:] = False
    elif which == "all":
        changed = [np.ones(len(f), bool) for f in filters]
    full_stats, only_stats = BlockingStats(), BlockingStats()
    full = lsh_links_multi(filters, thresholds, params, stats=full_stats)
    only = lsh_links_multi(filters, thresholds, params, changed=changed, stats=only_stats)
    for a, b in thresholds:
        keep = changed[a][full[(a, b)].left] | changed[b][full[(a, b)].right]
        for column in ("left", "right", "score"):
            np.testing.assert_array_equal(getattr(only[(a, b)], column), getattr(full[(a, b)], column)[keep])
        # With none changed in department 1, its pairs keep only the other side's changed records.
        assert keep.all() and len(keep) if which == "all" else 0 < keep.sum() < len(keep)
    assert (only_stats.buckets_skipped > 0) == (max_bucket == 3)
    if which == "all":  # every bucket holds a changed record: the same buckets skipped
        assert only_stats.buckets_skipped == full_stats.buckets_skipped


def test_compare_all_equals_compare_pair_by_pair():
    from bench.scale import population

    filters, _ = population(1200, departments=4, max_flip=0.12, seed=6)
    thresholds = {(a, b): 0.75 + 0.02 * (a + b) for a in range(4) for b in range(a + 1, 4)}
    # Some pairs exact, the larger ones blocked.
    sizes = sorted(len(filters[a]) * len(filters[b]) for a, b in thresholds)
    engine = LocalEngine("auto", exact_upto=sizes[2], exact_depth=0)
    seen = []
    together = engine.compare_all(filters, thresholds, progress=lambda d, t: seen.append((d, t)))
    for (a, b), t in thresholds.items():
        alone = engine.compare(filters[a], filters[b], t)
        np.testing.assert_array_equal(together[(a, b)].left, alone.left)
        np.testing.assert_array_equal(together[(a, b)].score, alone.score)
    assert seen[-1] == (sum(sizes), sum(sizes))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_coordinator_serves_with_the_engine_it_is_given(tmp_path):
    # `fedlink coordinator serve --engine URL` reaches the coordinator's runs.
    from server.serve import start

    running = start("127.0.0.1:0", tmp_path / "c.sqlite", insecure=True, engine="local+lsh?bands=100&rows=20")
    try:
        engine = running.coordinator.engine
        assert engine.name == "local+lsh" and engine.blocking == LshParams(bands=100, rows=20)
    finally:
        running.stop(grace=1)
    with pytest.raises(ValueError, match="unknown engine"):
        start("127.0.0.1:0", tmp_path / "d.sqlite", insecure=True, engine="gpu")
