"""Tests for server.matching: exactness against the NumPy reference, grouping."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from server import matching
from server.matching import (
    ScoredPairs,
    _dice_count_above,
    dice_reference,
    dice_scores_above,
    dice_scores_pairs,
    group_records,
    pack_filters,
    popcounts,
)

THRESHOLDS = (-0.5, 0.0, 0.3, 0.5, 0.6, 2 / 3, 0.8, 0.95, 1.0, 1.5)


def random_filters(rng, n, filter_bits, fill=0.5):
    bits = rng.random((n, filter_bits)) < fill
    return pack_filters(np.packbits(bits, axis=1), filter_bits)


def mixed_filters(rng, n, filter_bits):
    """Rows of many fill levels, near-duplicates, all-zero and all-one rows."""
    if n == 0:
        return np.zeros((0, filter_bits // 64), np.uint64)
    fills = rng.choice([0.0, 0.05, 0.2, 0.5, 0.7, 1.0], size=n)
    bits = rng.random((n, filter_bits)) < fills[:, None]
    # Near-duplicates of earlier rows, so high thresholds find pairs too.
    for i in range(1, n, 3):
        src = bits[rng.integers(0, i)]
        flip = rng.random(filter_bits) < rng.choice([0.0, 0.01, 0.05])
        bits[i] = src ^ flip
    return pack_filters(np.packbits(bits, axis=1), filter_bits)


def assert_matches_reference(left, right, threshold):
    ref = dice_reference(left, right)
    got = dice_scores_above(left, right, threshold)
    rows, cols = np.nonzero(ref >= threshold)
    np.testing.assert_array_equal(got.left, rows)
    np.testing.assert_array_equal(got.right, cols)
    np.testing.assert_array_equal(got.score, ref[rows, cols].astype(np.float32))
    assert got.left.dtype == np.int64 and got.right.dtype == np.int64
    assert got.score.dtype == np.float32
    assert _dice_count_above(left, right, threshold) == len(rows)


# --- packing -----------------------------------------------------------------


def test_pack_filters_layout_and_counts():
    rng = np.random.default_rng(1)
    bits = rng.random((5, 128)) < 0.4
    raw = [bytes(row) for row in np.packbits(bits, axis=1)]
    packed = pack_filters(raw, 128)
    assert packed.dtype == np.uint64 and packed.shape == (5, 2)
    assert packed.flags.c_contiguous
    # Filter bit k is bit 63 - k % 64 of word k // 64.
    for k in (0, 1, 63, 64, 100, 127):
        word = (packed[:, k // 64] >> np.uint64(63 - k % 64)) & np.uint64(1)
        np.testing.assert_array_equal(word.astype(bool), bits[:, k])
    np.testing.assert_array_equal(popcounts(packed), bits.sum(axis=1))
    assert popcounts(packed).dtype == np.int32
    np.testing.assert_array_equal(pack_filters(np.packbits(bits, axis=1), 128), packed)


def test_pack_filters_empty():
    assert pack_filters([], 1024).shape == (0, 16)


def test_pack_filters_names_the_wrong_index():
    raw = [bytes(128), bytes(128), bytes(127), bytes(129)]
    with pytest.raises(ValueError, match=r"filter 2 has 127 bytes, expected 128"):
        pack_filters(raw, 1024)
    with pytest.raises(ValueError, match=r"filter 0 "):
        pack_filters(np.zeros((3, 64), np.uint8), 1024)


def test_pack_filters_rejects_odd_widths():
    with pytest.raises(ValueError, match="multiple of 64"):
        pack_filters([bytes(12)], 96)


# --- similarity ----------------------------------------------------------------


@pytest.mark.parametrize("filter_bits", [64, 512, 1024, 2048])
@pytest.mark.parametrize("shape", [(0, 7), (7, 0), (1, 1), (13, 300), (301, 37)])
def test_scores_above_match_reference(filter_bits, shape):
    rng = np.random.default_rng(filter_bits * 1000 + shape[0] * 7 + shape[1])
    left = mixed_filters(rng, shape[0], filter_bits)
    right = np.concatenate([left[: shape[1] // 2], mixed_filters(rng, shape[1], filter_bits)])
    right = right[: shape[1]]
    for threshold in THRESHOLDS:
        assert_matches_reference(left, right, threshold)


@pytest.mark.parametrize("filter_bits", [64, 1024])
def test_all_zero_filters(filter_bits):
    zeros = np.zeros((4, filter_bits // 64), np.uint64)
    rng = np.random.default_rng(5)
    some = random_filters(rng, 6, filter_bits)
    for threshold in (-1.0, 0.0, 0.1, 1.0):
        assert_matches_reference(zeros, zeros, threshold)
        assert_matches_reference(zeros, some, threshold)
        assert_matches_reference(some, zeros, threshold)
    # Dice of two empty filters is 0: included at 0, not above.
    assert len(dice_scores_above(zeros, zeros, 0.0)) == 16
    assert len(dice_scores_above(zeros, zeros, 1e-9)) == 0


def test_scores_above_threshold_boundaries_exact():
    """Thresholds equal to attainable scores, and just either side of them."""
    rng = np.random.default_rng(11)
    left = mixed_filters(rng, 80, 512)
    right = mixed_filters(rng, 90, 512)
    ref = dice_reference(left, right)
    values = np.unique(ref[(ref > 0.3) & (ref < 1)])
    for value in rng.choice(values, size=12, replace=False):
        for threshold in (value, np.nextafter(value, 0), np.nextafter(value, 2),
                          float(np.float32(value))):
            assert_matches_reference(left, right, threshold)


def test_scores_above_across_tiles_and_threads(monkeypatch):
    """Enough rows for several tiles, row blocks, output growth and chunks."""
    monkeypatch.setattr(matching, "_MIN_PAIRS_PER_TASK", 1000)  # many chunks
    rng = np.random.default_rng(3)
    left = mixed_filters(rng, 1500, 1024)
    right = np.concatenate([left[::3], mixed_filters(rng, 900, 1024)])
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            for threshold in (0.0, 0.7, 0.9):
                assert_matches_reference(left, right, threshold)
    finally:
        numba.set_num_threads(before)


def best_two_of_reference(ref, threshold):
    """Each row's two highest float32 scores at or above ``threshold`` (-1 where fewer)."""
    best, second = np.full(len(ref), -1.0), np.full(len(ref), -1.0)
    for i, row in enumerate(ref):
        scores = np.sort(row[row >= threshold].astype(np.float32).astype(np.float64))[::-1]
        best[i], second[i] = (list(scores[:2]) + [-1.0, -1.0])[:2]
    return best, second


# Widths that take each kernel path: 9 words (plain loops on any CPU), 16
# (the 1024-bit vector kernel), 24 (eight-word vector passes: first, middle,
# last).  Right sides end mid-block and mid-tile (1024 bits: 256 columns a
# tile, 8 a block); equal rows, empty and full filters among them.
@pytest.mark.parametrize("filter_bits, m", [(576, 203), (1024, 525), (1024, 7), (1536, 349)])
def test_kernel_paths_match_reference(filter_bits, m):
    rng = np.random.default_rng(filter_bits + m)
    left = mixed_filters(rng, 61, filter_bits)
    right = np.concatenate([left[:20], mixed_filters(rng, m, filter_bits)])[:m]
    ref = dice_reference(left, right)
    for threshold in (0.0, 0.5, 0.8, 0.95, 1.0):
        assert_matches_reference(left, right, threshold)
        best, second, _, _ = matching.dice_best_two(left, right, threshold)
        want_best, want_second = best_two_of_reference(ref, threshold)
        np.testing.assert_array_equal(best, want_best)
        np.testing.assert_array_equal(second, want_second)


def test_portable_kernel_where_the_cpu_lacks_vector_popcount(tmp_path):
    """With numba compiling for a CPU without AVX-512 (Haswell), matching picks the plain
    loops at import, emits no 512-bit code, and gives the reference's results."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "portable.py"
    script.write_text(
        "import numba, numpy as np\n"
        "import test_matching as t\n"
        "from server import matching\n"
        "assert not matching._VECTOR_POPCOUNT\n"
        "rng = np.random.default_rng(9)\n"
        "for bits, m in ((64, 70), (1024, 525), (1536, 200)):\n"
        "    left = t.mixed_filters(rng, 40, bits)\n"
        "    right = np.concatenate([left[:10], t.mixed_filters(rng, m, bits)])[:m]\n"
        "    ref = matching.dice_reference(left, right)\n"
        "    for threshold in (0.0, 0.6, 0.9):\n"
        "        t.assert_matches_reference(left, right, threshold)\n"
        "        best, second, _, _ = matching.dice_best_two(left, right, threshold)\n"
        "        want = t.best_two_of_reference(ref, threshold)\n"
        "        assert (best == want[0]).all() and (second == want[1]).all()\n"
        "fresh = numba.njit(nogil=True)(matching._count_chunk.py_func)\n"
        "f = matching.pack_filters(np.zeros((9, 128), np.uint8), 1024)\n"
        "matching._run_chunks(fresh, f, f, 0.0, matching.popcounts(f), matching.popcounts(f))\n"
        "asm = next(iter(fresh.inspect_asm().values()))\n"
        "assert 'popcnt' in asm and 'zmm' not in asm\n"
        "print('portable ok')\n"
    )
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               NUMBA_CPU_FEATURES="+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+lzcnt,+movbe,"
                                  "+popcnt,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave",
               PYTHONPATH=os.pathsep.join([str(root), str(root / "tests")]))
    done = subprocess.run([sys.executable, str(script)], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "portable ok" in done.stdout


@pytest.mark.skipif(not matching._VECTOR_POPCOUNT, reason="the CPU has no AVX-512 VPOPCNTQ")
def test_vector_kernel_issues_what_the_limit_counts():
    """On a CPU with VPOPCNTQ the 1024-bit inner loop is eight pairs of AND + VPOPCNTQ + add
    on 512-bit registers, one store, one compare (bench/kernel.py reads the same loop)."""
    from bench.kernel import kernel_loop

    loop = kernel_loop()
    ops = loop["mnemonics"]
    assert loop["pairs_per_iteration"] == 8
    assert ops["vpandq"] == ops["vpopcntq"] == 16 and ops["vpaddq"] == 15
    assert ops["vpcmpnltq"] == 1 and ops["vmovdqu64"] == 1
    assert loop["vector_alu_ops_per_pair"] == 49 / 8


def test_scores_above_accepts_counts_and_checks_them():
    rng = np.random.default_rng(4)
    left = random_filters(rng, 20, 512)
    right = random_filters(rng, 30, 512)
    plain = dice_scores_above(left, right, 0.4)
    given = dice_scores_above(
        left, right, 0.4, left_counts=popcounts(left), right_counts=popcounts(right)
    )
    for field in ("left", "right", "score"):
        np.testing.assert_array_equal(getattr(given, field), getattr(plain, field))
    with pytest.raises(ValueError):
        dice_scores_above(left, right, 0.4, left_counts=np.zeros(3, np.int32))
    with pytest.raises(ValueError):
        dice_scores_above(left, right, 0.4, right_counts=np.full(30, 513))


def test_scores_above_rejects_bad_input():
    a = np.zeros((2, 16), np.uint64)
    with pytest.raises(ValueError, match="widths differ"):
        dice_scores_above(a, np.zeros((2, 8), np.uint64), 0.5)
    with pytest.raises(ValueError, match="uint64"):
        dice_scores_above(a.astype(np.int64), a, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        dice_scores_above(a, a, float("nan"))


def test_scores_pairs_match_reference():
    rng = np.random.default_rng(8)
    for filter_bits in (64, 1024, 2048):
        left = mixed_filters(rng, 40, filter_bits)
        right = mixed_filters(rng, 50, filter_bits)
        ref = dice_reference(left, right).astype(np.float32)
        li = rng.integers(0, 40, size=500)
        rj = rng.integers(0, 50, size=500)
        got = dice_scores_pairs(left, right, li, rj)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, ref[li, rj])
    assert dice_scores_pairs(left, right, [], []).shape == (0,)
    with pytest.raises(IndexError):
        dice_scores_pairs(left, right, [0, 40], [0, 0])
    with pytest.raises(IndexError):
        dice_scores_pairs(left, right, [0], [-1])


def test_reference_formula():
    a = pack_filters([bytes([0b11110000]) + bytes(7)], 64)
    b = pack_filters([bytes([0b11000000, 0b1]) + bytes(6)], 64)
    zero = np.zeros((1, 1), np.uint64)
    assert dice_reference(a, b)[0, 0] == 2 * 2 / (4 + 3)
    assert dice_reference(a, a)[0, 0] == 1.0
    assert dice_reference(zero, zero)[0, 0] == 0.0
    assert dice_reference(a, zero)[0, 0] == 0.0


# --- grouping -----------------------------------------------------------------


def links(pairs):
    """ScoredPairs from [(left, right, score), ...]."""
    if not pairs:
        return ScoredPairs(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
    left, right, score = zip(*pairs)
    return ScoredPairs(
        np.array(left, np.int64), np.array(right, np.int64), np.array(score, np.float32)
    )


def members(labels, n_per_party):
    """Groups as sets of (party, row)."""
    party = np.repeat(np.arange(len(n_per_party)), n_per_party)
    row = np.concatenate([np.arange(n) for n in n_per_party])
    groups = {}
    for p, r, g in zip(party, row, labels):
        groups.setdefault(int(g), set()).add((int(p), int(r)))
    return groups


def assert_one_record_per_party(labels, n_per_party):
    for group in members(labels, n_per_party).values():
        parties = [p for p, _ in group]
        assert len(parties) == len(set(parties)), group


def test_chain_never_joins_two_records_of_one_party():
    # Parties A=0, B=1, C=2; C has records C (row 0) and C' (row 1).
    # A-C' 0.95 first, then A-B 0.9 joins B; B-C 0.85 would add a second C.
    n = [1, 1, 2]
    pairs = {
        (0, 1): links([(0, 0, 0.9)]),
        (1, 2): links([(0, 0, 0.85)]),
        (0, 2): links([(0, 1, 0.95)]),
    }
    labels = group_records(n, pairs)
    assert labels.dtype == np.int64 and labels.shape == (4,)
    assert_one_record_per_party(labels, n)
    groups = members(labels, n)
    assert {(0, 0), (1, 0), (2, 1)} in groups.values()
    assert {(2, 0)} in groups.values()


def test_six_departments_one_person():
    n = [3, 2, 4, 1, 2, 3]
    rows = [1, 0, 3, 0, 1, 2]  # the person's row in each department
    pairs = {}
    for a in range(6):
        for b in range(a + 1, 6):
            pairs[(a, b)] = links([(rows[a], rows[b], 0.9 + 0.01 * a)])
    labels = group_records(n, pairs)
    groups = members(labels, n)
    assert {(p, rows[p]) for p in range(6)} in groups.values()
    assert len(groups) == sum(n) - 5  # everyone else alone
    # Also when the person is found only along a chain.
    chain = {(a, a + 1): links([(rows[a], rows[a + 1], 0.8)]) for a in range(5)}
    assert {(p, rows[p]) for p in range(6)} in members(group_records(n, chain), n).values()


def test_unlinked_records_are_singletons_and_labels_are_dense():
    n = [3, 2]
    labels = group_records(n, {(0, 1): links([(2, 1, 0.9)])})
    # Numbered by each group's first record: rows 0, 1 of party 0, then the pair.
    np.testing.assert_array_equal(labels, [0, 1, 2, 3, 2])
    np.testing.assert_array_equal(group_records(n, {}), np.arange(5))
    np.testing.assert_array_equal(group_records([0, 0], {}), np.empty(0, np.int64))
    np.testing.assert_array_equal(group_records(n, {(0, 1): links([])}), np.arange(5))


def test_ties_are_deterministic():
    # Record 0 of party 0 ties with rows 0 and 1 of party 1: (a, b, left, right)
    # order takes right=0 first whatever order the links come in.
    n = [1, 2]
    forward = {(0, 1): links([(0, 0, 0.8), (0, 1, 0.8)])}
    backward = {(0, 1): links([(0, 1, 0.8), (0, 0, 0.8)])}
    for pairs in (forward, backward):
        np.testing.assert_array_equal(group_records(n, pairs), [0, 0, 1])
    # Across party pairs: (0, 1) sorts before (0, 2) at equal scores.
    n = [1, 1, 1]
    pairs = {(0, 2): links([(0, 0, 0.7)]), (0, 1): links([(0, 0, 0.7)]),
             (1, 2): links([(0, 0, 0.7)])}
    labels = group_records(n, pairs)
    np.testing.assert_array_equal(labels, [0, 0, 0])
    # Shuffled inputs give the same labels.
    rng = np.random.default_rng(2)
    n = [30, 30, 30]
    base = {}
    for a, b in ((0, 1), (0, 2), (1, 2)):
        li = rng.integers(0, 30, 60)
        rj = rng.integers(0, 30, 60)
        sc = rng.choice([0.8, 0.85, 0.9], 60)
        base[(a, b)] = list(zip(li, rj, sc))
    expected = group_records(n, {k: links(v) for k, v in base.items()})
    assert_one_record_per_party(expected, n)
    for _ in range(3):
        shuffled = {}
        for key in rng.permutation(list(base)):
            v = base[tuple(key)]
            shuffled[tuple(int(x) for x in key)] = links([v[i] for i in rng.permutation(len(v))])
        np.testing.assert_array_equal(group_records(n, shuffled), expected)


def test_best_links_win():
    n = [2, 2]
    # Taken in input order, A0-B0 at 0.6 would block A0-B1 at 0.9.
    pairs = {(0, 1): links([(0, 0, 0.6), (0, 1, 0.9)])}
    groups = members(group_records(n, pairs), n)
    assert sorted(map(sorted, groups.values())) == [[(0, 0), (1, 1)], [(0, 1)], [(1, 0)]]


def test_random_grouping_keeps_parties_apart():
    rng = np.random.default_rng(9)
    n = [40, 35, 50, 20, 45, 30]
    pairs = {}
    for a in range(6):
        for b in range(a + 1, 6):
            k = 80
            pairs[(a, b)] = links(list(zip(rng.integers(0, n[a], k), rng.integers(0, n[b], k),
                                           rng.random(k))))
    labels = group_records(n, pairs)
    assert_one_record_per_party(labels, n)
    assert labels.min() == 0
    assert set(np.unique(labels)) == set(range(labels.max() + 1))
    first = {}
    for index, label in enumerate(labels):
        first.setdefault(label, index)
    assert list(first) == sorted(first)  # numbered by first record


def test_grouping_rejects_bad_input():
    with pytest.raises(ValueError, match="a < b"):
        group_records([1, 1], {(1, 0): links([(0, 0, 0.9)])})
    with pytest.raises(IndexError):
        group_records([1, 1], {(0, 1): links([(0, 1, 0.9)])})
    with pytest.raises(ValueError, match="at most 32"):
        group_records([1] * 33, {})
    with pytest.raises(ValueError, match="NaN"):
        group_records([1, 1], {(0, 1): links([(0, 0, float("nan"))])})


def test_grouping_32_parties():
    n = [1] * 32
    pairs = {(a, a + 1): links([(0, 0, 0.9)]) for a in range(31)}
    np.testing.assert_array_equal(group_records(n, pairs), np.zeros(32, np.int64))


@pytest.mark.parametrize("threshold", [0.0, 0.55, 0.8])
def test_best_two_equals_the_two_highest_of_all_pairs_above(threshold):
    from server.matching import dice_best_two

    rng = np.random.default_rng(11)
    left = pack_filters(np.packbits(rng.random((120, 1024)) < 0.5, axis=1), 1024)
    right = pack_filters(np.packbits(rng.random((9000, 1024)) < 0.5, axis=1), 1024)
    right[5000] = right[17] = left[3]  # ties at the top
    right[6000] = left[4] ^ (right[6000] & np.uint64(0x0F0F))  # a near match
    best, second, best_row, second_row = dice_best_two(left, right, threshold)
    pairs = dice_scores_above(left, right, threshold)
    for i in range(len(left)):
        scores = np.sort(pairs.score[pairs.left == i].astype(np.float64))[::-1]
        assert best[i] == (scores[0] if len(scores) else -1.0)
        assert second[i] == (scores[1] if len(scores) > 1 else -1.0)
        # The rows named score so, and are two rows (an incremental run keeps them: server/pipeline/profiles.py).
        for score, row in ((best[i], best_row[i]), (second[i], second_row[i])):
            if score < 0:
                assert row == -1
            else:
                assert np.float64(dice_scores_above(left[i:i + 1], right[row:row + 1], 0.0).score[0]) == score
        if second[i] >= 0:
            assert best_row[i] != second_row[i]
    assert {best_row[3], second_row[3]} == {5000, 17}
    assert best[3] == second[3] == 1.0
