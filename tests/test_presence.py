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
from server.matching import ScoredPairs, dice_scores_pairs, pack_filters
from server.pipeline.link import DepartmentRecords, link
from server.pipeline.presence import blank_ids, cut_by_class, whole_filter_floor, without_id

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


def test_a_pair_with_a_blank_id_is_scored_on_the_rest_and_held_to_its_own_threshold():
    filters = encode([PERSON, {**PERSON, "resident_id": ""}, PERSON])
    pairs = ScoredPairs(np.array([0, 0]), np.array([1, 2]),
                        dice_scores_pairs(filters, filters, np.array([0, 0]), np.array([1, 2])))
    assert pairs.score[0] < 0.9 and pairs.score[1] == 1.0  # the whole filter counts the blank against
    kept = cut_by_class(pairs, (0.95, 0.99), filters, filters, WORDS)
    assert sorted(zip(kept.right.tolist(), kept.score.tolist())) == [(1, 1.0), (2, 1.0)]
    # Each class at its own threshold: the blank one above what its pair reaches drops it alone.
    kept = cut_by_class(pairs, (0.95, 1.01), filters, filters, WORDS)
    assert kept.right.tolist() == [2]
    # Without an ID segment the whole filter decides, as before.
    assert cut_by_class(pairs, (0.95, 0.5), filters, filters, 0).right.tolist() == [2]


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


def test_the_whole_filter_floor_bounds_every_blank_class_pair():
    # possible_presence compares at this floor on the whole filter and cuts each class at its own
    # threshold: no blank-class pair reaching the threshold on the rest may fall under the floor.
    people, other = _registers(300, 5)
    left, right = encode(people), encode(other)
    li, rj = np.meshgrid(np.arange(300), np.flatnonzero(blank_ids(right, WORDS)), indexing="ij")
    li, rj = li.ravel(), rj.ravel()
    whole = dice_scores_pairs(left, right, li, rj)
    rest = dice_scores_pairs(without_id(left, WORDS), without_id(right, WORDS), li, rj)
    words = left.shape[1]
    assert (whole >= np.array([whole_filter_floor(r, WORDS, words) for r in rest]) - 1e-6).all()
    # And the floor is not slack: the pair's own whole-filter Dice is within a fifth of it.
    assert (whole <= 1.2 * rest * (words - WORDS) / words + 1e-6).all()


def test_a_pair_is_compared_from_a_level_near_its_thresholds_with_the_links_of_comparing_at_the_floor(monkeypatch):
    """The pairs a run scores and keeps start a margin under what the pair's thresholds need, the blank
    class's included (its threshold on the rest, bounded on the whole filter by the records' counts),
    not at the floor, where a tenth of all pairs of balanced filters pass; the links are those of
    comparing at the floor."""
    import sys

    from server.matching import dice_scores_above

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
    level = near.carried.levels[(0, 1)]
    assert floor.carried.levels[(0, 1)] == SCHEMA.threshold < level
    kept = near.carried.pairs[(0, 1)]
    assert len(kept) == len(dice_scores_above(left, right, level)) < len(floor.carried.pairs[(0, 1)])
    # The blank class sets it: its threshold on the rest, on the whole filter's scale, is the lower.
    assert SCHEMA.threshold < level < near.thresholds[(0, 1)] - margin
    assert np.array_equal(near.labels, floor.labels)
    for c in ("left", "right", "score"):
        assert np.array_equal(getattr(near.pairs[(0, 1)], c), getattr(floor.pairs[(0, 1)], c))


def test_pairs_kept_from_the_floor_before_levels_existed_are_reused_cut_at_this_runs_level(monkeypatch):
    """A project's last run before migration 0009 kept its pairs from the floor: the next run reuses
    them, cut at its own level as the kernel decides, and its links and kept pairs are a full run's."""
    import sys

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
        previous = Previous("before-0009", SCHEMA.threshold, before.carried.bucket_bound,
                            pair_carries(departments, before.carried), unchanged)
        full = link(departments, SCHEMA.threshold, engine, lambda *a: None, auto=True, schema=SCHEMA)
        kept = link(departments, SCHEMA.threshold, engine, lambda *a: None, auto=True, schema=SCHEMA,
                    previous=previous)
    assert kept.carried.summary["department_pairs_kept"] == 1
    assert before.carried.levels[(0, 1)] < kept.carried.levels[(0, 1)]
    assert len(kept.carried.pairs[(0, 1)]) < len(before.carried.pairs[(0, 1)])  # some were cut
    for c in ("left", "right", "score"):
        assert np.array_equal(getattr(kept.carried.pairs[(0, 1)], c), getattr(full.carried.pairs[(0, 1)], c))
        assert np.array_equal(getattr(kept.pairs[(0, 1)], c), getattr(full.pairs[(0, 1)], c))
    assert np.array_equal(kept.labels, full.labels)
