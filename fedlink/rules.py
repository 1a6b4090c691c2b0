"""Needs rules as data: load, validate and evaluate a rule pack.

Both sides read the same pack: an agent takes its [parameters] and
[subsistence_line] to derive indicators locally, the coordinator evaluates its
[[rules]] on linked persons. A rule's `when` is a small boolean language
(`dept.indicator`, and/or/not, absent(dept), present(dept)) parsed with `ast`
and never `eval`ed, so a pack cannot run code.
"""
from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import Callable, Mapping

import numpy as np

from fedlink.schema import DEFAULT_INDICATORS, DEPARTMENTS, HOUSEHOLD_DEPARTMENTS


class RuleError(ValueError):
    """A rule pack that cannot be used; the message names the rule and field."""


@dataclass(frozen=True)
class Rule:
    name: str
    need: str
    tier: int
    when: str
    route: tuple[str, ...]
    explain: str

    @cached_property
    def _compiled(self) -> tuple[Callable, tuple[str, ...]]:
        return _compile(self)

    @property
    def terms(self) -> tuple[str, ...]:
        """The facts the rule reads: 'dept.indicator', 'not dept.indicator', 'absent:dept', 'present:dept'."""
        return self._compiled[1]

    def holds(self, facts: Mapping[str, np.ndarray]) -> np.ndarray:
        """Vectorised: a boolean per person."""
        return self._compiled[0](facts)


@dataclass(frozen=True)
class RulePack:
    rules: tuple[Rule, ...]
    parameters: Mapping[str, float]
    subsistence_lines: Mapping[str, float]  # region-code prefix -> yuan/person/month
    national_floor: float
    suppression_k: int = 5
    transition_needs: tuple[str, ...] = ()  # needs whose end opens a gradual-exit transition
    text: str = ""
    # 'dept.indicator' facts about a household rather than a person: every
    # member linked to the household is evaluated with them (apply_households).
    household_indicators: tuple[str, ...] = ()

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.need for r in self.rules))

    @property
    def absence_departments(self) -> list[str]:
        """The departments some rule asks a person to be absent from."""
        return sorted({t.split(":", 1)[1] for r in self.rules for t in r.terms if t.startswith("absent:")})

    def line_for(self, region_code: str) -> float:
        """The local subsistence line: longest matching region-code prefix, else the national floor."""
        code = (region_code or "").strip()
        for n in range(len(code), 1, -1):
            line = self.subsistence_lines.get(code[:n])
            if line is not None:
                return line
        return self.national_floor

    def param(self, name: str) -> float:
        try:
            return self.parameters[name]
        except KeyError:
            raise RuleError(f"parameters.{name}: missing from the rule pack") from None


_PARAMETERS = {
    "elderly_age", "school_age_min", "school_age_max", "catastrophic_oop_yuan", "near_line_factor",
    "wage_above_line_factor", "recent_job_loss_months", "chronic_absence_days", "transition_months",
    "not_in_need_suppression_days",
}


def default_text() -> str:
    return resources.files("fedlink").joinpath("rulepacks/default.toml").read_text(encoding="utf-8")


def load_rulepack(text: str | None = None, *, source: str = "rule pack") -> RulePack:
    """Parse and validate a pack; `text=None` or "" loads the default pack."""
    text = text or default_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RuleError(f"{source}: not valid TOML: {e}") from e
    params = dict(data.get("parameters", {}))
    missing = _PARAMETERS - set(params)
    if missing:
        raise RuleError(f"{source}: [parameters] lacks {sorted(missing)}")
    for k, v in params.items():
        if not isinstance(v, (int, float)) or v < 0:
            raise RuleError(f"{source}: parameters.{k} = {v!r} is not a non-negative number")
    if not 3 <= params["transition_months"] <= 6:
        raise RuleError(f"{source}: parameters.transition_months = {params['transition_months']!r}: a gradual exit "
                        "lasts 3 to 6 months")
    lines = dict(data.get("subsistence_line", {}))
    floor = lines.pop("national_floor", None)
    if not isinstance(floor, (int, float)) or floor <= 0:
        raise RuleError(f"{source}: subsistence_line.national_floor must be a positive number")
    for k, v in lines.items():
        if not (k.isdigit() and 2 <= len(k) <= 6) or not isinstance(v, (int, float)) or v <= 0:
            raise RuleError(f"{source}: subsistence_line.{k} = {v!r}: keys are 2-6 digit region prefixes, values positive")
    rules = []
    seen = set()
    for i, r in enumerate(data.get("rules", [])):
        rule = _rule(r, f"{source}: rules[{i}]")
        if rule.name in seen:
            raise RuleError(f"{source}: rule {rule.name!r} is defined twice")
        seen.add(rule.name)
        rules.append(rule)
    if not rules:
        raise RuleError(f"{source}: no [[rules]]")
    transition = tuple(data.get("transition_needs", ()))
    unknown = set(transition) - {r.need for r in rules}
    if unknown:
        raise RuleError(f"{source}: transition_needs names needs no rule finds: {sorted(unknown)}")
    households = _household_indicators(data.get("household_indicators", []), source)
    return RulePack(tuple(rules), params, lines, float(floor), int(data.get("suppression_k", 5)), transition, text,
                    households)


def _household_indicators(names, source: str) -> tuple[str, ...]:
    if not isinstance(names, list):
        raise RuleError(f"{source}: household_indicators must be a list of 'department.indicator' names")
    for i, name in enumerate(names):
        dept, _, ind = str(name).partition(".")
        where = f"{source}: household_indicators[{i}] = {name!r}"
        if dept not in HOUSEHOLD_DEPARTMENTS:
            raise RuleError(f"{where}: only departments that number households can say something about one "
                            f"({', '.join(HOUSEHOLD_DEPARTMENTS)})")
        if ind not in DEFAULT_INDICATORS[dept]:
            raise RuleError(f"{where}: {dept} has no indicator {ind!r}; it has {', '.join(DEFAULT_INDICATORS[dept])}")
    return tuple(dict.fromkeys(names))


def _rule(r: dict, where: str) -> Rule:
    name = r.get("name")
    if not isinstance(name, str) or not name:
        raise RuleError(f"{where}.name: missing")
    where = f"{where.split(': ')[0]}: rule {name!r}"
    for key, kind in (("need", str), ("tier", int), ("when", str), ("explain", str)):
        if not isinstance(r.get(key), kind):
            raise RuleError(f"{where}.{key}: missing or not a {kind.__name__}")
    if not 1 <= r["tier"] <= 3:
        raise RuleError(f"{where}.tier: {r['tier']} is not 1, 2 or 3")
    route = tuple(r.get("route", ()))
    for d in route:
        if d not in DEPARTMENTS:
            raise RuleError(f"{where}.route: unknown department {d!r}")
    extra = set(r) - {"name", "need", "tier", "when", "route", "explain"}
    if extra:
        raise RuleError(f"{where}: unknown keys {sorted(extra)}")
    rule = Rule(name, r["need"], r["tier"], r["when"], route, r["explain"])
    try:
        _ = rule.terms  # compile now, so a bad expression fails at load, naming the rule
    except RuleError as e:
        raise RuleError(f"{where}.when: {e}") from None
    return rule


def _compile(rule: Rule) -> tuple[Callable, tuple[str, ...]]:
    try:
        tree = ast.parse(rule.when, mode="eval").body
    except SyntaxError as e:
        raise RuleError(f"cannot parse {rule.when!r}: {e.msg}") from None
    terms: list[str] = []

    def build(node) -> Callable:
        if isinstance(node, ast.BoolOp):
            parts = [build(v) for v in node.values]
            op = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            return lambda f: _reduce(op, [p(f) for p in parts])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            if isinstance(node.operand, ast.Attribute):
                # A negated indicator is a reason in its own right ("not enrolled").
                build(node.operand)
                return _term(terms, "not " + terms.pop())
            inner = build(node.operand)
            return lambda f: ~inner(f)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            dept, ind = node.value.id, node.attr
            if dept not in DEFAULT_INDICATORS:
                raise RuleError(f"unknown department {dept!r} in {dept}.{ind}")
            if ind not in DEFAULT_INDICATORS[dept]:
                raise RuleError(f"{dept} has no indicator {ind!r}; it has {', '.join(DEFAULT_INDICATORS[dept])}")
            return _term(terms, f"{dept}.{ind}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("absent", "present")
                and len(node.args) == 1 and isinstance(node.args[0], ast.Name) and not node.keywords):
            dept = node.args[0].id
            if dept not in DEPARTMENTS:
                raise RuleError(f"unknown department {dept!r} in {node.func.id}({dept})")
            return _term(terms, f"{node.func.id}:{dept}")
        raise RuleError(f"{ast.unparse(node)!r} is not allowed: use dept.indicator, and/or/not, absent(dept), present(dept)")

    fn = build(tree)
    return fn, tuple(dict.fromkeys(terms))


def _term(terms: list[str], key: str) -> Callable:
    terms.append(key)
    if key.startswith("not "):
        inner = key[4:]
        return lambda f: ~np.asarray(f[inner], dtype=bool)
    if key.startswith("absent:"):
        return lambda f: _absent(f, key.split(":", 1)[1])
    return lambda f: np.asarray(f[key], dtype=bool)


def _absent(facts: Mapping[str, np.ndarray], dept: str) -> np.ndarray:
    """absent(dept): no record there, and no unlinked record there that may be
    the person's ('possible:dept', server.linkage.possible_presence). Absence
    is only as sure as the links: a missed link must not read as "not on the
    school roll"."""
    absent = ~np.asarray(facts[f"present:{dept}"], dtype=bool)
    possible = facts.get(f"possible:{dept}")
    return absent if possible is None else absent & ~np.asarray(possible, dtype=bool)


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
    route: tuple[str, ...]
    explanation: str


def evaluate(pack: RulePack, facts: Mapping[str, np.ndarray], n: int) -> list[NeedFlag]:
    """Evaluate every rule on n persons. `facts` maps 'dept.indicator',
    'present:dept' and 'possible:dept' to arrays of length n; a missing key
    counts as all-false (the department does not hold the person, or did not
    send that indicator).
    One flag per person and need, at the most urgent tier that fired."""
    full = _FactView(facts, n)
    fired: dict[str, list[tuple[Rule, np.ndarray]]] = {}
    for rule in sorted(pack.rules, key=lambda r: (r.need, r.tier)):
        hit = rule.holds(full)
        if hit.any():
            fired.setdefault(rule.need, []).append((rule, hit))
    flags = []
    for need, hits in fired.items():
        persons = np.flatnonzero(_reduce(np.logical_or, [h for _, h in hits]))
        # Each term's array once per rule, not once per person (that was quadratic).
        held = {r.name: [(term, full.term(term)) for term in r.terms] for r, _ in hits}
        for p in persons:
            rules = [r for r, h in hits if h[p]]
            reasons = tuple((r.name, tuple(term for term, arr in held[r.name] if arr[p])) for r in rules)
            top = rules[0]
            flags.append(NeedFlag(int(p), need, top.tier, tuple(r.name for r in rules), reasons, top.route, top.explain))
    return flags


class _FactView(Mapping):
    def __init__(self, facts: Mapping[str, np.ndarray], n: int):
        self._facts, self._n, self._false = facts, n, np.zeros(n, dtype=bool)

    def __getitem__(self, key):
        v = self._facts.get(key)
        return self._false if v is None else np.asarray(v, dtype=bool)

    def term(self, t: str) -> np.ndarray:
        if t.startswith("not "):
            return ~self[t[4:]]
        if t.startswith("absent:"):
            return _absent(self, t.split(":", 1)[1])
        return self[t]

    def __iter__(self):
        return iter(self._facts)

    def __len__(self):
        return len(self._facts)
