"""A blank resident ID as no evidence: the ID segment (agents/hardening.py IdSegmentEncoder) and
the blank class's own score and threshold (server/pipeline/presence.py)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from agents.hardening import HardenedEncoder
from agents.normalise import feature_columns
from fedlink.schema import LinkageSchema, SchemaError
from server.engine.local import LocalEngine
from server.matching import ScoredPairs, dice_scores_above, dice_scores_pairs, pack_filters
from server.pipeline.link import DepartmentRecords, link
from server.pipeline.presence import blank_ids, compare_by_class, cut_by_class, merged, rests_of, without_id

SECRET, PROJECT = b"presence test secret", "presence-test"
SCHEMA = LinkageSchema()
WORDS = SCHEMA.id_segment_words()
PERSON = {"name": "欧阳翠华", "sex": "女", "birth_date": "1962-03-14", "resident_id": "440106196203140028",
          "address": "广州市天河区体育西路12号"}


def encode(rows: list[dict], schema: LinkageSchema = SCHEMA) -> np.ndarray:
    frame = pd.DataFrame(rows).reindex(columns=["name", "sex", "birth_date", "resident_id", "address"])
    columns = feature_columns(frame.fillna(""), [(f.name, f.kind, f.column) for f in schema.fields])
    return pack_filters(HardenedEncoder(schema, SECRET, PROJECT).encode(columns), schema.filter_bits)


def test_the_id_segment_is_the_id_alone_and_zero_where_blank():
    assert WORDS == 4  # 256 bits of the default 1024
    rows = [PERSON, {**PERSON, "resident_id": ""}, {**PERSON, "resident_id": "440106196203140036"}]
    filters = encode(rows)
    assert blank_ids(filters, WORDS).tolist() == [False, True, False]
    # Under twin a present segment is about half set, the rest of the filter too.
    counts = np.bitwise_count(filters[:, -WORDS:]).sum(axis=1)
    assert counts[1] == 0 and 96 <= counts[0] <= 160 and 96 <= counts[2] <= 160
    # The rest is the other fields' own encoding: a blank or another ID leaves it as it is.
    rest = without_id(filters, WORDS)
    assert (rest[0] == rest[1]).all() and (rest[0] == rest[2]).all()
    ids = [f for f in SCHEMA.fields if f.kind == "resident_id"]
    alone = encode(rows[:1], replace(SCHEMA, fields=tuple(ids), filter_bits=256, id_segment_bits=0))
    # The segment is under its own keys, not the record's: another project label.
    assert not (alone[0] == filters[0, -WORDS:]).all()


def _classes(filters: np.ndarray, thresholds: tuple[float, float], words: int = WORDS) -> ScoredPairs:
    """Record 0 against the others, each class compared at its threshold (``compare_by_class``)."""
    sides = [filters[:1], filters[1:]]
    departments = [DepartmentRecords(str(i), np.arange(len(f)), [], f, {}) for i, f in enumerate(sides)]
    with LocalEngine() as engine:
        classes = compare_by_class(sides, rests_of(departments, words), {(0, 1): thresholds[0]},
                                   {(0, 1): thresholds[1]} if words else {}, words, engine)
    return merged(*(c[(0, 1)] for c in classes if (0, 1) in c))


def test_a_pair_with_a_blank_id_is_scored_on_the_rest_and_held_to_its_own_threshold():
    moved = {**PERSON, "resident_id": "", "address": "广州市天河区体育西路14号"}
    filters = encode([PERSON, moved, PERSON])
    whole = dice_scores_pairs(filters, filters, np.array([0, 0]), np.array([1, 2]))
    rest = float(dice_scores_pairs(without_id(filters, WORDS), without_id(filters, WORDS), np.array([0]),
                                   np.array([1]))[0])
    assert whole[0] < rest < 1.0 and whole[1] == 1.0  # the whole filter counts the blank against
    kept = _classes(filters, (0.95, rest))
    assert list(zip(kept.right.tolist(), kept.score.tolist())) == [(0, np.float32(rest)), (1, 1.0)]
    # Each class at its own threshold: the blank one above what its pair reaches drops it alone.
    assert _classes(filters, (0.95, rest + 0.01)).right.tolist() == [1]
    assert _classes(filters, (1.0, rest)).right.tolist() == [0, 1]
    # Without an ID segment the whole filter decides, as before.
    assert _classes(filters, (0.95, 0.5), words=0).right.tolist() == [1]
    # Compared lower and cut at the thresholds, each class on its own bit counts: the same pairs.
    low = _classes(filters, (0.5, 0.5))
    for thresholds in ((0.95, rest), (0.95, rest + 0.01), (0.5, 0.5)):
        cut = cut_by_class(low, thresholds, filters[:1], filters[1:], WORDS)
        assert cut.right.tolist() == _classes(filters, thresholds).right.tolist()


def test_the_id_segment_setting_is_checked():
    with pytest.raises(SchemaError, match="id_segment_bits"):
        LinkageSchema(id_segment_bits=200).validate()
    with pytest.raises(SchemaError, match="id_segment_bits"):
        LinkageSchema(id_segment_bits=1024).validate()
    assert LinkageSchema(hardening="salt").id_segment_words() == 0  # salt keeps the ID in the record filter
    assert LinkageSchema(comparison="segments").id_segment_words() == 0


def _registers(n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Two registers of n people; in the second a fifth of the IDs blank, and the pairs with a
    blank ID carry one more typing error (a digit of the birth date or a name character)."""
    rng = np.random.default_rng(seed)
    surnames, given = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗", "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂华建国"
    people = []
    for i in range(n):
        birth = f"{rng.integers(1940, 2010)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
        people.append({"name": surnames[rng.integers(len(surnames))]
                       + "".join(rng.choice(list(given), rng.integers(1, 3))),
                       "sex": "男" if i % 2 else "女", "birth_date": birth,
                       "resident_id": f"{110101 + i % 50:06d}{birth.replace('-', '')}{i % 1000:03d}X",
                       "address": f"幸福路{rng.integers(1, 300)}号{rng.integers(1, 20)}栋"})
    other = []
    for i, p in enumerate(people):
        q = dict(p)
        if i % 5 == 0:
            q["resident_id"] = ""
            if i % 10 == 0:
                q["birth_date"] = q["birth_date"][:8] + f"{(int(q['birth_date'][8:]) % 28) + 1:02d}"
            else:
                q["name"] = q["name"][0] + given[(given.index(q["name"][-1]) + 1) % len(given)]
        if i % 7 == 0:
            q["address"] = f"解放路{i}号"  # where they live, not their hukou
        other.append(q)
    return people, other


def _link(schema: LinkageSchema, people, other) -> set[tuple[int, int]]:
    departments = [DepartmentRecords(name, np.arange(len(rows), dtype=np.int64),
                                     [b"%s%d" % (name.encode(), i) for i in range(len(rows))],
                                     encode(rows, schema), {})
                   for name, rows in (("population", people), ("housing", other))]
    with LocalEngine() as engine:
        linkage = link(departments, schema.threshold, engine, lambda *a: None, auto=True, schema=schema)
    a, b = linkage.person_labels(0), linkage.person_labels(1)
    return {(i, j) for i in range(len(a)) for j in np.flatnonzero(b == a[i]).tolist()}


def test_blank_ids_are_linked_without_losing_precision_with_the_threshold_read_without_truth():
    people, other = _registers(1500, 4)
    truth = {(i, i) for i in range(1500)}
    blank = {(i, i) for i in range(0, 1500, 5)}
    before, after = (_link(replace(SCHEMA, id_segment_bits=bits), people, other) for bits in (0, 256))
    # The blank-ID pairs with one more error fall under the one threshold; scored on the
    # rest, at the blank class's own threshold, they are linked.
    assert len(after & blank) >= len(before & blank) + 0.2 * len(blank)
    assert len(after & blank) / len(blank) >= 0.8  # measured: 174 of 300 before, 243 after
    assert len(after - truth) <= len(before - truth) + 2


def _exact_class(left, right, level, words, blank):
    """Every pair of the class scoring at least ``level`` (the rest's Dice for the blank class), by brute force."""
    pick = (lambda f: without_id(f, words)) if blank else (lambda f: f)
    p = dice_scores_above(pick(left), pick(right), level)
    either = blank_ids(left, words)[p.left] | blank_ids(right, words)[p.right]
    keep = either if blank else ~either
    return list(zip(p.left[keep].tolist(), p.right[keep].tolist(), p.score[keep].tolist()))


def test_each_class_is_compared_on_its_own_filter_at_its_own_level():
    """compare_by_class (the link phase's and the absence rules' compare): the pairs with both IDs are
    every such pair at the ID class's level on the whole filter, those with a blank ID every such pair
    at the blank class's level on the rest, none missed and none of the other class; with changed
    records, only their pairs."""
    people, other = _registers(400, 5)
    left, right = encode(people), encode(other)
    departments = [DepartmentRecords(n, np.arange(len(f)), [], f, {}) for n, f in (("a", left), ("b", right))]
    rests = rests_of(departments, WORDS)
    with LocalEngine() as engine:
        ids, blank = compare_by_class([left, right], rests, {(0, 1): 0.7}, {(0, 1): 0.75}, WORDS, engine)
        changed = [np.arange(len(left)) % 9 == 0, np.arange(len(right)) % 11 == 0]
        fresh = compare_by_class([left, right], rests, {(0, 1): 0.7}, {(0, 1): 0.75}, WORDS, engine, changed=changed)
    for got, new, level, is_blank in ((ids, fresh[0], 0.7, False), (blank, fresh[1], 0.75, True)):
        want = _exact_class(left, right, level, WORDS, is_blank)
        p = got[(0, 1)]
        assert list(zip(p.left.tolist(), p.right.tolist(), p.score.tolist())) == want and len(want) > 100
        p = new[(0, 1)]
        assert list(zip(p.left.tolist(), p.right.tolist(), p.score.tolist())) == [
            (i, j, s) for i, j, s in want if changed[0][i] or changed[1][j]]
    assert np.isin(np.flatnonzero(blank_ids(right, WORDS)), blank[(0, 1)].right).mean() > 0.9  # the blank IDs' links


def test_a_pair_is_compared_from_levels_near_its_thresholds_with_the_links_of_comparing_at_the_floor(monkeypatch):
    """The pairs a run scores and keeps start a margin under each class's threshold (the blank class's
    on the rest of the filter), not at the floor, where a tenth of all pairs of balanced filters pass;
    the links are those of comparing at the floor."""
    import sys

    linking = sys.modules["server.pipeline.link"]  # the module (server.pipeline's `link` is the function)

    people, other = _registers(1500, 7)
    departments = [DepartmentRecords(name, np.arange(len(rows), dtype=np.int64),
                                     [b"%s%d" % (name.encode(), i) for i in range(len(rows))], encode(rows), {})
                   for name, rows in (("population", people), ("housing", other))]
    left, right = departments[0].filters, departments[1].filters
    margin = linking.CARRY_MARGIN
    with LocalEngine() as engine:
        near = link(departments, SCHEMA.threshold, engine, lambda *a: None, auto=True, schema=SCHEMA)
        monkeypatch.setattr(linking, "CARRY_MARGIN", 1.0)  # every level down to the floor: the old compare
        floor = link(departments, SCHEMA.threshold, engine, lambda *a: None, auto=True, schema=SCHEMA)
    level, blank_level = near.carried.levels[(0, 1)], near.carried.blank_levels[(0, 1)]
    assert floor.carried.levels[(0, 1)] == floor.carried.blank_levels[(0, 1)] == SCHEMA.threshold
    assert level == pytest.approx(near.thresholds[(0, 1)] - margin) and level > SCHEMA.threshold
    assert blank_level == pytest.approx(near.blank_thresholds[(0, 1)] - margin) and blank_level > SCHEMA.threshold
    kept = near.carried.pairs[(0, 1)]
    want = sorted(_exact_class(left, right, level, WORDS, False) + _exact_class(left, right, blank_level, WORDS, True))
    assert list(zip(kept.left.tolist(), kept.right.tolist(), kept.score.tolist())) == want
    assert len(kept) < len(floor.carried.pairs[(0, 1)]) / 2
    assert np.array_equal(near.labels, floor.labels)
    for c in ("left", "right", "score"):
        assert np.array_equal(getattr(near.pairs[(0, 1)], c), getattr(floor.pairs[(0, 1)], c))


@pytest.mark.parametrize("blank_kept", [False, True])
def test_pairs_kept_from_the_floor_are_reused_per_class_cut_at_this_runs_levels(monkeypatch, blank_kept):
    """A run kept its pairs from the floor: the next run reuses them, each class cut at its own level
    as the kernel decides, and its links and kept pairs are a full run's. A run before migration 0009
    kept them at the floor with no level, one before 0010 with no blank class's level (its blank-ID
    pairs were scored on the whole filter): that class is compared anew, the other reused."""
    import sys
    from dataclasses import replace as replaced

    from server.pipeline.increments import Previous, pair_carries

    linking = sys.modules["server.pipeline.link"]
    people, other = _registers(800, 9)
    departments = [DepartmentRecords(name, np.arange(len(rows), dtype=np.int64),
                                     [b"%s%d" % (name.encode(), i) for i in range(len(rows))], encode(rows), {})
                   for name, rows in (("population", people), ("housing", other))]
    margin = linking.CARRY_MARGIN
    with LocalEngine() as engine:
        monkeypatch.setattr(linking, "CARRY_MARGIN", 1.0)
        before = link(departments, SCHEMA.threshold, engine, lambda *a: None, auto=True, schema=SCHEMA)
        monkeypatch.setattr(linking, "CARRY_MARGIN", margin)
        unchanged = {d.department: (np.arange(len(d.ids)), d.ids) for d in departments}
        carries = pair_carries(departments, before.carried)
        if not blank_kept:
            carries = {k: replaced(c, blank_level=None) for k, c in carries.items()}
        previous = Previous("earlier", SCHEMA.threshold, before.carried.bucket_bound, carries, unchanged)
        full = link(departments, SCHEMA.threshold, engine, lambda *a: None, auto=True, schema=SCHEMA)
        kept = link(departments, SCHEMA.threshold, engine, lambda *a: None, auto=True, schema=SCHEMA,
                    previous=previous)
    assert kept.carried.summary["department_pairs_kept"] == 1
    assert kept.carried.summary["blank_classes_kept"] == int(blank_kept)
    assert before.carried.levels[(0, 1)] < kept.carried.levels[(0, 1)]
    assert before.carried.blank_levels[(0, 1)] < kept.carried.blank_levels[(0, 1)]
    assert len(kept.carried.pairs[(0, 1)]) < len(before.carried.pairs[(0, 1)])  # some were cut
    for c in ("left", "right", "score"):
        assert np.array_equal(getattr(kept.carried.pairs[(0, 1)], c), getattr(full.carried.pairs[(0, 1)], c))
        assert np.array_equal(getattr(kept.pairs[(0, 1)], c), getattr(full.pairs[(0, 1)], c))
    assert np.array_equal(kept.labels, full.labels)
