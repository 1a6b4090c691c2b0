"""Needs: the facts of each linked person, households, absence, and the rule
pack evaluated on them (the pack is parsed and checked in fedlink/rules.py).

Facts are boolean arrays over persons: 'present:dept', 'dept.indicator',
'household:dept.indicator' (the value came from a household member's record)
and 'possible:dept' (an unlinked near match there: not surely absent).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fedlink.rules import And, Condition, Not, Rule, RulePack, Term, term_department
from server.engine.base import Engine
from server.pipeline.link import Linkage
from server.pipeline.presence import compare_by_class, merged


def find_needs(linkage: Linkage, pack: RulePack, engine: Engine) -> tuple[dict[str, np.ndarray], list[NeedFlag]]:
    """The needs step: every person's facts (with households and the second
    look for absence) and the pack evaluated on them."""
    facts = person_facts(linkage, pack)
    facts.update(possible_presence(linkage, pack.absence_departments, engine))
    return facts, evaluate(pack, facts, linkage.persons)


def person_facts(linkage: Linkage, pack=None) -> dict[str, np.ndarray]:
    """Facts per person: 'present:dept' and 'dept.indicator'; with a pack that
    has household indicators, those apply to every member of the household
    the person is linked into (apply_households)."""
    facts = {}
    for d, dept in enumerate(linkage.departments):
        labels = linkage.person_labels(d)
        present = np.zeros(linkage.persons, dtype=bool)
        present[labels] = True
        facts[f"present:{dept.department}"] = present
        for name, values in dept.indicators.items():
            v = np.zeros(linkage.persons, dtype=bool)
            v[labels] = values.astype(bool)
            facts[f"{dept.department}.{name}"] = v
    if pack is not None and pack.household_indicators:
        facts = apply_households(pack, facts, households_of(linkage))
    return facts


# How far below a department pair's threshold an unlinked record still counts
# as possibly the same person, for absence rules. Measured on 100k persons with
# doubled errors (docs/quality.md): school dropout precision / recall 0.932 /
# 0.996 without the second look, 0.985 / 0.994 at 0.05, 0.990 / 0.982 at 0.1
# (a wider margin also spares true absences); a missed child costs more than
# a review.
NEAR_MARGIN = 0.05


def possible_presence(linkage: Linkage, departments: list[str], engine: Engine, margin: float = NEAR_MARGIN
                      ) -> dict[str, np.ndarray]:
    """'possible:D' per person, for each department D asked for: the person has
    no record in D, but one of their records scores at least (pair threshold -
    margin) against a record of D whose person could be the same one: the two
    persons share no department (joining them would give no department two
    records). Such a pair is a link that may have been missed.

    A second look at what the grouping left apart, restricted to it: records
    of persons absent from D against D's records of persons absent from the
    other department. A sibling's school record, whose person also has a
    population record, conflicts and does not hide the child's absence."""
    names = [d.department for d in linkage.departments]
    n = linkage.persons
    holds = np.zeros(n, dtype=np.int64)  # bit x: the person has a record in department x
    for x in range(len(names)):
        holds[linkage.person_labels(x)] |= np.int64(1) << x
    out = {}
    for name in departments:
        if name not in names:
            continue
        d = names.index(name)
        possible = np.zeros(n, dtype=bool)
        labels_d = linkage.person_labels(d)
        for x in range(len(names)):
            if x == d:
                continue
            labels_x = linkage.person_labels(x)
            rows_x = np.flatnonzero((holds[labels_x] >> d) & 1 == 0)  # x's records of persons with none in D
            rows_d = np.flatnonzero((holds[labels_d] >> x) & 1 == 0)  # D's records of persons with none in x
            if not len(rows_x) or not len(rows_d):
                continue
            pair = (min(x, d), max(x, d))
            # Each class of pair near its own threshold, compared as the link phase compares them:
            # a blank ID on the rest of the filter (presence.py).
            t = [max(0.0, c[pair] - margin) for c in (linkage.thresholds, linkage.blank_thresholds or linkage.thresholds)]
            filters = [linkage.departments[x].filters[rows_x], linkage.departments[d].filters[rows_d]]
            rests = [linkage.rests[x][rows_x], linkage.rests[d][rows_d]] if linkage.id_words else None
            classes = compare_by_class(filters, rests, {(0, 1): t[0]}, {(0, 1): t[1]} if linkage.id_words else {},
                                       linkage.id_words, engine)
            near = merged(*(c[(0, 1)] for c in classes if (0, 1) in c))
            person, other = labels_x[rows_x[near.left]], labels_d[rows_d[near.right]]
            possible[person[(holds[person] & holds[other]) == 0]] = True
        out[f"possible:{name}"] = possible
    return out


def households_of(linkage: Linkage) -> np.ndarray:
    """Each person's household (-1 for none): persons whose records share a
    household token in any department are one household."""
    memberships = [(linkage.person_labels(d), dept.households) for d, dept in enumerate(linkage.departments)
                   if dept.households is not None]
    return household_labels(linkage.persons, memberships)


def household_labels(persons: int, memberships: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Households of persons, from each department's own household grouping.

    `memberships` holds, per department that numbers households, (person of
    each record, that department's household number of the record, -1 where
    unknown). Persons who share a household in any department are one
    household (connected components), so a population household and a civil
    affairs household that share a member merge. Returns a label per person
    (the smallest person index in the household), -1 for persons in none.
    """
    label = np.arange(persons, dtype=np.int64)
    edges = []
    for person, household in memberships:
        person, household = np.asarray(person, np.int64), np.asarray(household, np.int64)
        keep = household >= 0
        person, household = person[keep], household[keep]
        if not person.size:
            continue
        # Tie every member to the first-seen member of its household.
        _, first, inverse = np.unique(household, return_index=True, return_inverse=True)
        edges.append((person, person[first][inverse]))
    if not edges:
        return np.full(persons, -1, dtype=np.int64)
    a = np.concatenate([e[0] for e in edges])
    b = np.concatenate([e[1] for e in edges])
    while True:  # min-label propagation: rounds grow with a chain's length, which households keep short
        low = np.minimum(label[a], label[b])
        before = label.copy()
        np.minimum.at(label, a, low)
        np.minimum.at(label, b, low)
        label = label[label]  # pointer jumping
        if np.array_equal(label, before):
            break
    member = np.zeros(persons, dtype=bool)
    member[a] = True
    return np.where(member, label, -1)


def apply_households(pack: RulePack, facts: Mapping[str, np.ndarray], households: np.ndarray) -> dict:
    """Household indicators apply to every member of the household.

    A person with their own record in the department keeps that record's
    value; a member without one (a child not on the civil affairs roll, or
    whose record did not link) takes the value of the household's records
    there (any of them: they describe one household). The person's
    `household:dept.indicator` fact says the value came from a household
    member's record, for the explanation. `facts` is not changed."""
    out = dict(facts)
    n = len(households)
    member = households >= 0
    for key in pack.household_indicators:
        dept = key.split(".", 1)[0]
        own = facts.get(f"present:{dept}")
        value = facts.get(key)
        if own is None or value is None or not member.any():
            continue
        own, value = np.asarray(own, bool), np.asarray(value, bool)
        held = np.zeros(n, dtype=bool)  # household label -> any member's record says so
        np.logical_or.at(held, households[member & own & value], True)
        borrowed = member & ~own & held[np.where(member, households, 0)]
        out[key] = value | borrowed
        out[f"household:{key}"] = borrowed
    return out


def holds(condition: Condition, facts: Mapping[str, np.ndarray], known: set[str] | None = None) -> np.ndarray:
    """Vectorised: whether ``condition`` surely holds, a boolean per person.
    `known`: the departments whose facts are known (default: those with a
    'present:dept' fact); what any other department would say is unknown."""
    if known is None:
        known = known_departments(facts)
    return _truth(condition, facts, known)[0]


def known_departments(facts: Mapping[str, np.ndarray]) -> set[str]:
    """The departments the facts speak for: those with a current upload in the run ('present:dept')."""
    return {k.split(":", 1)[1] for k in facts if k.startswith("present:")}


def _truth(condition: Condition, facts: Mapping[str, np.ndarray], known: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """Kleene's three-valued logic: (surely true, surely false) per person;
    neither is unknown. A rule fires only where its condition is surely true,
    so a department that sent nothing never reads as "not on the roll"."""
    if isinstance(condition, Term):
        if term_department(condition.key) not in known:
            unknown = np.zeros(_length(facts), dtype=bool)
            return unknown, unknown
        value = _term(facts, condition.key)
        return value, ~value
    if isinstance(condition, Not):
        true, false = _truth(condition.inner, facts, known)
        return false, true
    parts = [_truth(part, facts, known) for part in condition.parts]
    trues, falses = [t for t, _ in parts], [f for _, f in parts]
    if isinstance(condition, And):
        return _reduce(np.logical_and, trues), _reduce(np.logical_or, falses)
    return _reduce(np.logical_or, trues), _reduce(np.logical_and, falses)


def _reasons(condition: Condition, facts: Mapping[str, np.ndarray], known: set[str], where: np.ndarray
             ) -> dict[str, np.ndarray]:
    """Per term, the persons for whom it is part of why the condition holds:
    the term holds and so does every condition above it (a branch of an `or`
    that did not hold is no reason; nor is anything under a `not`)."""
    where = where & _truth(condition, facts, known)[0]
    if isinstance(condition, Term):
        return {condition.key: where}
    out: dict[str, np.ndarray] = {}
    if isinstance(condition, Not):
        return out
    for part in condition.parts:
        for key, mask in _reasons(part, facts, known, where).items():
            out[key] = out[key] | mask if key in out else mask
    return out


def _length(facts: Mapping[str, np.ndarray]) -> int:
    return facts.n if isinstance(facts, _FactView) else len(next(iter(facts.values()), ()))


def _term(facts: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    if key.startswith("not "):
        return ~np.asarray(facts[key[4:]], dtype=bool)
    if key.startswith("absent:"):
        return _absent(facts, key.split(":", 1)[1])
    return np.asarray(facts[key], dtype=bool)


def _absent(facts: Mapping[str, np.ndarray], dept: str) -> np.ndarray:
    """absent(dept): no record there, and no unlinked record there that may be
    the person's ('possible:dept', possible_presence). Absence
    is only as sure as the links: a missed link must not read as "not on the
    school roll"."""
    absent = ~np.asarray(facts[f"present:{dept}"], dtype=bool)
    possible = facts.get(f"possible:{dept}")
    return absent if possible is None else absent & ~np.asarray(possible, dtype=bool)


def _reduce(op, arrays):
    out = arrays[0]
    for a in arrays[1:]:
        out = op(out, a)
    return out


@dataclass(frozen=True)
class NeedFlag:
    """One need found for one person (index into the facts), with why."""

    person: int
    need: str
    tier: int
    rules: tuple[str, ...]  # the rules that fired, most urgent first
    reasons: tuple[tuple[str, tuple[str, ...]], ...]  # (rule, terms that held)
    explanation: str         # the top rule's `explain`
    explanation_zh: str = ""  # its `explain_zh`


def evaluate(pack: RulePack, facts: Mapping[str, np.ndarray], n: int) -> list[NeedFlag]:
    """Evaluate every rule on n persons. `facts` maps 'dept.indicator',
    'present:dept' and 'possible:dept' to arrays of length n. A department
    without a 'present:dept' fact has no current upload: its facts are
    unknown, and a rule fires only where it holds whatever they would be. For
    a department with one, a missing key counts as all-false (the department
    does not hold the person, or did not send that indicator).
    One flag per person and need, at the most urgent tier that fired."""
    full = _FactView(facts, n)
    known = known_departments(facts)
    fired: dict[str, list[tuple[Rule, np.ndarray]]] = {}
    for rule in sorted(pack.rules, key=lambda r: (r.need, r.tier)):
        hit = holds(rule.condition, full, known)
        if hit.any():
            fired.setdefault(rule.need, []).append((rule, hit))
    flags = []
    for need, hits in fired.items():
        persons = np.flatnonzero(_reduce(np.logical_or, [h for _, h in hits]))
        # Each term's array once per rule, not once per person (that was quadratic).
        held = {r.name: list(_reasons(r.condition, full, known, np.ones(n, dtype=bool)).items()) for r, _ in hits}
        for p in persons:
            rules = [r for r, h in hits if h[p]]
            reasons = tuple((r.name, tuple(term for term, arr in held[r.name] if arr[p])) for r in rules)
            top = rules[0]
            flags.append(NeedFlag(int(p), need, top.tier, tuple(r.name for r in rules), reasons, top.explain,
                                  top.explain_zh))
    return flags


class _FactView(Mapping):
    """The facts with every missing key read as all-false."""

    def __init__(self, facts: Mapping[str, np.ndarray], n: int):
        self._facts, self.n, self._false = facts, n, np.zeros(n, dtype=bool)

    def __getitem__(self, key):
        v = self._facts.get(key)
        return self._false if v is None else np.asarray(v, dtype=bool)

    def __iter__(self):
        return iter(self._facts)

    def __len__(self):
        return len(self._facts)
