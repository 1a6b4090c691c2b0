"""The segmented comparison (schema comparison = "segments"): a blank field is no evidence,
the presence word says only which segments a record has, the weights are fitted by EM
without truth, and record-level projects are untouched (their digest, their filters)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from agents.hardening import HardenedEncoder, IdSegmentEncoder, SegmentedEncoder
from agents.normalise import feature_columns
from fedlink.schema import LinkageSchema, Project, SchemaError, schema_from_dict
from fedlink.wire import project_from_pb, project_to_pb
from server.engine.local import LocalEngine
from server.matching import dice_scores_pairs, pack_filters
from server.pipeline.segments import fit_em, link_segments, presence, segment_levels

SEGMENTED = schema_from_dict({"comparison": "segments", "hardening": "balance"})
FIELDS = [(f.name, f.kind, f.column) for f in SEGMENTED.fields]
SECRET, PROJECT = b"segments test secret", "segments-test"


def encode(rows: list[dict], schema: LinkageSchema = SEGMENTED) -> np.ndarray:
    frame = pd.DataFrame(rows).reindex(columns=["name", "sex", "birth_date", "resident_id", "address"])
    columns = feature_columns(frame.fillna(""), [(f.name, f.kind, f.column) for f in schema.fields])
    return pack_filters(HardenedEncoder(schema, SECRET, PROJECT).encode(columns), schema.filter_bits)


PERSON = {"name": "欧阳翠华", "sex": "女", "birth_date": "1962-03-14", "resident_id": "440106196203140028",
          "address": "广州市天河区体育西路12号"}


def test_the_segmented_schema_fills_the_filter_and_validates():
    SEGMENTED.validate()
    assert sum(s.words for s in SEGMENTED.segments()) * 64 + 64 == SEGMENTED.filter_bits
    with pytest.raises(SchemaError, match="segment_bits"):
        schema_from_dict({"comparison": "segments", "fields": [{"name": "name", "hashes": 5}]}).validate()
    with pytest.raises(SchemaError, match="comparison"):
        LinkageSchema(comparison="fields").validate()
    with pytest.raises(SchemaError, match="not available with segments"):
        replace(SEGMENTED, hardening="xor").validate()


def test_record_level_projects_keep_their_digest_and_segmented_ones_cross_the_wire():
    record = Project.default("p")
    # The digest of the default project since its ID segment also holds a Hong Kong, Macau or
    # Taiwan permit and the document's region (session 25; retaken on purpose: new fields).
    # A project stored before keeps its schema and so its digest: with the fields of then,
    # e7435e99... (the ID segment, session 23), and with id_segment_bits = 0 too, e3504010...
    # (`twin`, the ID in the record filter; with `balance`, 0422b88f...): a project's digest
    # is of its schema, so uploads stay bound.
    assert record.digest() == "a6ed4867de410950f91ff6f5608ddd75c09390d39d0dfb70905fb482f1695da6"
    before = replace(record.schema, fields=tuple(f for f in record.schema.fields
                                                 if f.name not in ("permit", "document_region")))
    assert replace(record, schema=before).digest() == (
        "e7435e9988497a7b0a09b2c6269b2f9b0a09d8f602d9557cd51278ec8a1d5195")
    assert replace(record, schema=replace(before, id_segment_bits=0)).digest() == (
        "e350401038e7d26aa54e80f7e2851859c339218fcb82db0a50443b28b24d10ea")
    segmented = replace(record, schema=SEGMENTED)
    assert segmented.digest() != record.digest()
    back = project_from_pb(project_to_pb(segmented))
    assert back.schema == SEGMENTED and back.digest() == segmented.digest()
    assert project_from_pb(project_to_pb(record)).schema.comparison == "record"
    for bits in (0, 256):  # 0 is a value, not the field's absence
        split = replace(record, schema=replace(record.schema, id_segment_bits=bits))
        assert project_from_pb(project_to_pb(split)).schema.id_segment_bits == bits


def test_presence_word_marks_exactly_the_segments_with_a_value():
    filters = encode([PERSON, {**PERSON, "resident_id": "", "address": ""}, {"name": "王伟"}])
    groups = [s.group for s in SEGMENTED.segments()]
    have = presence(filters, len(groups))
    assert dict(zip(groups, have[0])) == {g: True for g in groups}
    assert not have[1][groups.index("document")] and not have[1][groups.index("address")]
    assert [g for g, p in zip(groups, have[2]) if p] == ["name", "pinyin", "name_phonetic"]
    # Under balance every segment is half set, blank or not: only the presence word tells.
    seg = SEGMENTED.segments()[groups.index("document")]
    counts = np.bitwise_count(filters[:, seg.start:seg.start + seg.words]).sum(axis=1)
    assert set(counts.tolist()) == {seg.words * 32}


def test_a_blank_id_is_no_evidence_where_the_record_level_dice_counts_it_against():
    full, blank_id = PERSON, {**PERSON, "resident_id": ""}
    seg = encode([full, blank_id])
    levels = segment_levels(seg[:1], seg[1:], np.array([[0, 0]]), SEGMENTED.segments())
    assert 0 in levels[0].tolist()  # the document comparison: missing, weight 0
    assert set(levels[0].tolist()) <= {0, 1}  # everything else agrees fully
    record = LinkageSchema(id_segment_bits=0)
    rec = encode([full, blank_id, full], record)
    blank_score, same_score = dice_scores_pairs(rec[:1], rec, np.array([0, 0]), np.array([1, 2]))
    assert same_score == 1.0 and blank_score < 0.9  # the record-level Dice loses a tenth or more


def _population(n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Two registers of n people; the second with a third of the IDs blank and some typos."""
    rng = np.random.default_rng(seed)
    surnames, given = "王李张刘陈杨黄赵吴周", "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂"
    people = []
    for i in range(n):
        birth = f"{rng.integers(1940, 2010)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
        people.append({"name": surnames[rng.integers(10)] + "".join(rng.choice(list(given), rng.integers(1, 3))),
                       "sex": "男" if i % 2 else "女", "birth_date": birth,
                       "resident_id": f"{110101 + i:06d}{birth.replace('-', '')}{i % 1000:03d}X",
                       "address": f"幸福路{rng.integers(1, 300)}号"})
    other = []
    for i, p in enumerate(people):
        q = dict(p)
        if i % 3 == 0:
            q["resident_id"] = ""
        if i % 7 == 0:
            q["address"] = f"解放路{i}号"  # where they live, not their hukou
        other.append(q)
    return people, other


def test_em_without_truth_links_blank_id_records_and_keeps_namesakes_apart():
    people, other = _population(600, 1)
    left, right = encode(people), encode(other)
    with LocalEngine() as engine:
        links, threshold, model = link_segments(left, right, SEGMENTED, engine)
    truth = set(zip(range(600), range(600)))
    found = set(zip(links.left.tolist(), links.right.tolist()))
    blank = {(i, i) for i in range(0, 600, 3)}
    assert len(found & blank) / len(blank) >= 0.99
    assert len(found & truth) / len(truth) >= 0.99
    assert len(found - truth) <= 3  # namesakes (10 surnames, 25 given characters) stay apart
    # The fitted weights: agreement counts for, disagreement against, missing for nothing.
    w = model.weights
    assert (w[:, 1] > 0).all() and (w[:, -1] < 0).all() and (w[:, 0] == 0).all()
    assert 0.0 < threshold < 1.0


def test_em_recovers_planted_probabilities():
    rng = np.random.default_rng(3)
    k, share = 20_000, 0.3
    match = rng.random(k) < share
    m, u = np.array([0.9, 0.06, 0.03, 0.01]), np.array([0.05, 0.1, 0.15, 0.7])
    levels = np.stack([np.where(match, rng.choice(4, k, p=m), rng.choice(4, k, p=u)) + 1 for _ in range(4)], 1)
    model = fit_em(levels.astype(np.int8))
    assert model.share == pytest.approx(share, abs=0.02)
    assert model.m[:, 1:] == pytest.approx(np.tile(m, (4, 1)), abs=0.03)
    assert model.u[:, 1:] == pytest.approx(np.tile(u, (4, 1)), abs=0.03)


def test_the_segmented_encoder_is_what_a_segmented_schema_gets():
    assert type(HardenedEncoder(SEGMENTED, SECRET, PROJECT)) is SegmentedEncoder
    assert type(HardenedEncoder(LinkageSchema(), SECRET, PROJECT)) is IdSegmentEncoder
    assert type(HardenedEncoder(LinkageSchema(id_segment_bits=0), SECRET, PROJECT)) is HardenedEncoder
