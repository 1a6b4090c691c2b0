"""Absence rules ("not on the school roll") are only as sure as the links: a
person whose record nearly matches an unlinked record of the department is
not taken for absent, while a twin's claimed record does not hide the other
twin's absence."""
from __future__ import annotations

import numpy as np

from fedlink.rules import load_rulepack
from server.engine import LocalEngine
from server.pipeline.link import DepartmentRecords, link
from server.pipeline.needs import NEAR_MARGIN, evaluate, person_facts, possible_presence
from server.pipeline.report import build_report
from server.matching import dice_reference, pack_filters

PACK = load_rulepack()
THRESHOLD = 0.8
rng = np.random.default_rng(5)


def balanced(n: int) -> np.ndarray:
    """n random filters with exactly half of 1024 bits set, as unpacked bits."""
    bits = np.zeros((n, 1024), dtype=bool)
    np.put_along_axis(bits, np.argsort(rng.random((n, 1024)), axis=1)[:, :512], True, axis=1)
    return bits


def near(bits: np.ndarray, dice: float) -> np.ndarray:
    """A copy with the same popcount whose Dice with ``bits`` is ``dice``."""
    k = round(512 * (1 - dice))
    out = bits.copy()
    out[rng.choice(np.flatnonzero(bits), k, replace=False)] = False
    out[rng.choice(np.flatnonzero(~bits), k, replace=False)] = True
    return out


def department(name: str, bits: np.ndarray, indicators: dict[str, list[int]]) -> DepartmentRecords:
    n = len(bits)
    return DepartmentRecords(name, np.arange(n, dtype=np.int64), [b""] * n,
                             pack_filters(np.packbits(bits, axis=1), 1024),
                             {k: np.array(v, dtype=np.int8) for k, v in indicators.items()})


def test_rule_reads_possible_presence_as_not_absent():
    school_age = np.array([True, True, True])
    facts = {"population.compulsory_school_age": school_age, "present:population": school_age,
             "present:education": np.array([False, False, True]),
             "education.enrolled": np.array([False, False, True]),
             "possible:education": np.array([True, False, False])}
    flagged = {f.person for f in evaluate(PACK, facts, 3) if f.need == "school_dropout_risk"}
    assert flagged == {1}  # 0 may be on the roll under a missed link; 2 is enrolled
    assert PACK.absence_departments == ["education"]


def test_missed_link_is_possible_presence_and_a_twins_claimed_record_is_not():
    people = balanced(5)  # missed, twin_at_school, twin_absent, not_at_school, distractor
    missed, twin_at_school, twin_absent, not_at_school = range(4)
    # Twins: one address, one birth date; near enough to count, were the record unclaimed.
    people[twin_absent] = near(people[twin_at_school], THRESHOLD - NEAR_MARGIN / 2)
    pop_bits = np.vstack([people, balanced(200)])
    school_bits = np.vstack([near(people[missed], THRESHOLD - NEAR_MARGIN / 2),  # below the threshold
                             people[twin_at_school],
                             balanced(100)])
    scores = dice_reference(pack_filters(np.packbits(pop_bits[:4], axis=1), 1024),
                            pack_filters(np.packbits(school_bits[:2], axis=1), 1024))
    assert scores[missed, 0] < THRESHOLD <= scores[twin_at_school, 1]
    assert THRESHOLD - NEAR_MARGIN <= scores[twin_absent, 1] < THRESHOLD

    # The absent twin is also in medical insurance, where the twin at school
    # is not: that record is near the school record of a person with no
    # medical record, but the two persons both hold a population record.
    medical_bits = np.vstack([people[twin_absent], balanced(50)])
    n_pop = len(pop_bits)
    pop = department("population", pop_bits, {"compulsory_school_age": [1] * n_pop})
    school = department("education", school_bits, {"enrolled": [1] * len(school_bits)})
    medical = department("medical_insurance", medical_bits, {})
    linkage = link([pop, school, medical], THRESHOLD, LocalEngine(), lambda *a: None)
    assert linkage.person_labels(2)[0] == linkage.person_labels(0)[twin_absent]
    person = linkage.person_labels(0)
    assert person[twin_at_school] == linkage.person_labels(1)[1]
    assert person[missed] != linkage.person_labels(1)[0]  # the link was missed

    possible = possible_presence(linkage, ["education"], LocalEngine())["possible:education"]
    assert possible[person[missed]]
    assert not possible[person[twin_absent]]  # its near match is the other twin's, claimed
    assert not possible[person[not_at_school]]
    assert possible.sum() == 1  # and no distractor is near an unclaimed school record

    facts = person_facts(linkage, PACK)
    without = {f.person for f in evaluate(PACK, facts, linkage.persons) if f.need == "school_dropout_risk"}
    facts.update(possible_presence(linkage, PACK.absence_departments, LocalEngine()))
    with_second_look = {f.person for f in evaluate(PACK, facts, linkage.persons) if f.need == "school_dropout_risk"}
    assert person[missed] in without and person[missed] not in with_second_look
    assert {person[twin_absent], person[not_at_school]} <= with_second_look
    assert without - with_second_look == {person[missed]}
    # The operator's report counts them, with small cells suppressed like every count.
    report = build_report(linkage, [], 1, facts)
    assert report["absence_uncertain"] == [{"key": "education", "count": 1, "suppressed": False}]
    assert build_report(linkage, [], 5, facts)["absence_uncertain"][0]["suppressed"]
