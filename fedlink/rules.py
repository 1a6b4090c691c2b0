"""Needs rules as data: load, validate and evaluate a rule pack.

Both sides read the same pack: an agent takes its [parameters] and
[subsistence_line] to derive indicators locally, the coordinator evaluates its
[[rules]] on linked persons (server/pipeline/needs.py). A rule's `when` is a
small boolean language (`dept.indicator`, and/or/not, absent(dept),
present(dept)) parsed with `ast` into a `Condition` and never `eval`ed, so a
pack cannot run code. Evaluation is three-valued: what a department that is
not in the project, or has no current upload, would say is unknown, and a rule
fires only where its condition is surely true (`idle_rules` says which rules
cannot fire at all, and why). The pack's [disclosure.NEED] tables are the
disclosure policy: who receives each need's flags and what evidence each
recipient reads (`Disclosure`; enforced in server/pipeline/disclosure.py).
Pure Python: an operator's bare install checks a pack.
"""
from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Iterable, Mapping

from fedlink.schema import DEFAULT_INDICATORS, DEPARTMENTS, HOUSEHOLD_DEPARTMENTS


class RuleError(ValueError):
    """A rule pack that cannot be used; the message names the rule and field."""


@dataclass(frozen=True)
class Term:
    """One fact a rule reads: 'dept.indicator', 'not dept.indicator', 'absent:dept' or 'present:dept'."""
    key: str


@dataclass(frozen=True)
class Not:
    inner: Condition


@dataclass(frozen=True)
class And:
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Condition, ...]


Condition = Term | Not | And | Or  # a parsed `when`


@dataclass(frozen=True)
class Rule:
    name: str
    need: str
    tier: int
    when: str
    explain: str
    explain_zh: str = ""  # the same in Chinese, for worklists in Chinese

    @cached_property
    def condition(self) -> Condition:
        """The parsed `when`; RuleError if it is not in the rule language."""
        return _parse(self.when)

    @property
    def terms(self) -> tuple[str, ...]:
        """The facts the rule reads, in order: the keys of its `Term`s."""
        return tuple(dict.fromkeys(_terms(self.condition)))


# What a recipient reads in place of evidence the disclosure policy does not show it.
NEUTRAL = "another register corroborates this"


def term_department(term: str) -> str:
    """The department a fact comes from: 'not dept.x', 'dept.x', 'absent:dept', 'present:dept'."""
    term = term.removeprefix("not ")
    return term.split(":", 1)[1] if ":" in term else term.split(".", 1)[0]


def evidence_kind(term: str) -> str:
    """The evidence a fact discloses, whether it held or not: 'not dept.x' is evidence of kind 'dept.x'."""
    return term.removeprefix("not ")


@dataclass(frozen=True)
class Disclosure:
    """Who receives a need's flags and what evidence each recipient sees.

    The flag goes to the first of `recipients` that holds a record of the
    person (the department that acts on it) and to no one else. A recipient
    always sees its own indicators; another department's only where
    `evidence[recipient]` names it ('dept.indicator', 'absent:dept',
    'present:dept'); anything else reads as NEUTRAL. `departments_linked`:
    whether the recipient learns which departments hold the person."""

    need: str
    recipients: tuple[str, ...]
    evidence: Mapping[str, tuple[str, ...]]
    departments_linked: bool = False

    def shows(self, recipient: str, term: str) -> bool:
        return term_department(term) == recipient or evidence_kind(term) in self.evidence.get(recipient, ())

    def recipient(self, holders) -> str | None:
        """The department that receives the flag, of those holding the person; None if none may."""
        return next((d for d in self.recipients if d in holders), None)


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
    disclosure: Mapping[str, Disclosure] = field(default_factory=dict)  # per need

    def grants(self) -> set[tuple[str, str, str]]:
        """Everything the policy lets anyone learn, as (need, recipient, what):
        what is 'flag' (it receives the need's flags), 'departments_linked', or
        an evidence kind of another department. A change that adds a grant
        widens disclosure."""
        out = set()
        for need, d in self.disclosure.items():
            for r in d.recipients:
                out.add((need, r, "flag"))
                if d.departments_linked:
                    out.add((need, r, "departments_linked"))
                out.update((need, r, e) for e in d.evidence.get(r, ()))
        return out

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


@dataclass(frozen=True)
class IdleRule:
    """A rule that cannot fire: every way its condition could hold reads a
    department with nothing to say (not in the project, or no current upload)."""

    rule: str
    need: str
    missing: tuple[tuple[str, str], ...]  # (department it reads, why that department is unknown)

    def sentence(self) -> str:
        why = "; ".join(f"{dept} {reason}" for dept, reason in self.missing)
        return f"rule {self.rule} ({self.need.replace('_', ' ')}) cannot fire: {why}"


NOT_IN_PROJECT = "is not in the project"
NO_UPLOAD = "has no current upload"


def idle_rules(pack: RulePack, departments: Iterable[str], uploaded: Iterable[str] | None = None
               ) -> tuple[IdleRule, ...]:
    """The rules of `pack` that cannot fire in a project of `departments`
    (and, given `uploaded`, on those departments' current uploads): whatever
    the known departments say, the condition is at best unknown."""
    departments = set(departments)
    known = departments if uploaded is None else departments & set(uploaded)
    idle = []
    for rule in pack.rules:
        if _can_be(rule.condition, known)[0]:
            continue
        unknown = [d for d in dict.fromkeys(term_department(t) for t in rule.terms) if d not in known]
        idle.append(IdleRule(rule.name, rule.need, tuple(
            (d, NOT_IN_PROJECT if d not in departments else NO_UPLOAD) for d in unknown)))
    return tuple(idle)


def _can_be(condition: Condition, known: set[str]) -> tuple[bool, bool]:
    """(whether the condition can be surely true, whether it can be surely
    false) when only the `known` departments' facts are known, each free."""
    if isinstance(condition, Term):
        k = term_department(condition.key) in known
        return k, k
    if isinstance(condition, Not):
        true, false = _can_be(condition.inner, known)
        return false, true
    parts = [_can_be(p, known) for p in condition.parts]
    if isinstance(condition, And):
        return all(t for t, _ in parts), any(f for _, f in parts)
    return any(t for t, _ in parts), all(f for _, f in parts)


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
    disclosure = _disclosure(data.get("disclosure"), rules, source)
    return RulePack(tuple(rules), params, lines, float(floor), int(data.get("suppression_k", 5)), transition, text,
                    households, disclosure)


def _disclosure(table, rules: list[Rule], source: str) -> dict[str, Disclosure]:
    """[disclosure.NEED] for every need a rule finds: recipients, evidence per recipient, departments_linked."""
    if not isinstance(table, dict):
        raise RuleError(f"{source}: [disclosure] is missing: every need says who receives its flags and what "
                        "evidence each recipient sees (see the default pack)")
    needs = {r.need: set() for r in rules}
    for r in rules:
        needs[r.need].update(evidence_kind(t) for t in r.terms)
    unknown = set(table) - set(needs)
    if unknown:
        raise RuleError(f"{source}: disclosure.{sorted(unknown)[0]}: no rule finds this need")
    out = {}
    for need, read in needs.items():
        where = f"{source}: disclosure.{need}"
        entry = table.get(need)
        if not isinstance(entry, dict):
            raise RuleError(f"{where}: missing: say who receives {need} flags (recipients) and what they see")
        extra = set(entry) - {"recipients", "evidence", "departments_linked"}
        if extra:
            raise RuleError(f"{where}: unknown keys {sorted(extra)}")
        recipients = entry.get("recipients")
        if not isinstance(recipients, list) or not recipients:
            raise RuleError(f"{where}.recipients: a non-empty list of departments, in the order they receive")
        for d in recipients:
            if d not in DEPARTMENTS:
                raise RuleError(f"{where}.recipients: unknown department {d!r}")
        shown = entry.get("departments_linked", False)
        if not isinstance(shown, bool):
            raise RuleError(f"{where}.departments_linked: true or false")
        evidence = entry.get("evidence", {})
        if not isinstance(evidence, dict):
            raise RuleError(f"{where}.evidence: a table of recipient = [evidence, ...]")
        out[need] = Disclosure(need, tuple(dict.fromkeys(recipients)),
                               {r: _evidence(v, r, recipients, read, f"{where}.evidence.{r}")
                                for r, v in evidence.items()}, shown)
    return out


def _evidence(names, recipient: str, recipients: list[str], read: set[str], where: str) -> tuple[str, ...]:
    if recipient not in recipients:
        raise RuleError(f"{where}: {recipient} is not among the recipients")
    if not isinstance(names, list):
        raise RuleError(f"{where}: a list of 'department.indicator', 'absent(department)' or 'present(department)'")
    out = []
    for name in names:
        try:
            term = _parse(str(name))
        except RuleError as e:
            raise RuleError(f"{where}: {e}") from None
        if not isinstance(term, Term) or term.key.startswith("not "):
            raise RuleError(f"{where}: {name!r} is not one fact: name 'department.indicator', 'absent(department)' "
                            "or 'present(department)'")
        if term_department(term.key) == recipient:
            raise RuleError(f"{where}: {name!r} is {recipient}'s own; a recipient always sees its own indicators")
        if term.key not in read:
            raise RuleError(f"{where}: {name!r} is read by no rule of this need")
        out.append(term.key)
    return tuple(dict.fromkeys(out))


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
    if "route" in r:
        raise RuleError(f"{where}.route: who receives a need's flags is set in [disclosure.{r['need']}].recipients, "
                        "not per rule")
    if not isinstance(r.get("explain_zh", ""), str):
        raise RuleError(f"{where}.explain_zh: not a str")
    extra = set(r) - {"name", "need", "tier", "when", "explain", "explain_zh"}
    if extra:
        raise RuleError(f"{where}: unknown keys {sorted(extra)}")
    rule = Rule(name, r["need"], r["tier"], r["when"], r["explain"], r.get("explain_zh", ""))
    try:
        _ = rule.terms  # compile now, so a bad expression fails at load, naming the rule
    except RuleError as e:
        raise RuleError(f"{where}.when: {e}") from None
    return rule


def _parse(when: str) -> Condition:
    try:
        tree = ast.parse(when, mode="eval").body
    except SyntaxError as e:
        raise RuleError(f"cannot parse {when!r}: {e.msg}") from None

    def build(node) -> Condition:
        if isinstance(node, ast.BoolOp):
            parts = tuple(build(v) for v in node.values)
            return And(parts) if isinstance(node.op, ast.And) else Or(parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = build(node.operand)
            if isinstance(node.operand, ast.Attribute):
                # A negated indicator is a reason in its own right ("not enrolled").
                return Term("not " + inner.key)
            return Not(inner)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            dept, ind = node.value.id, node.attr
            if dept not in DEFAULT_INDICATORS:
                raise RuleError(f"unknown department {dept!r} in {dept}.{ind}")
            if ind not in DEFAULT_INDICATORS[dept]:
                raise RuleError(f"{dept} has no indicator {ind!r}; it has {', '.join(DEFAULT_INDICATORS[dept])}")
            return Term(f"{dept}.{ind}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("absent", "present")
                and len(node.args) == 1 and isinstance(node.args[0], ast.Name) and not node.keywords):
            dept = node.args[0].id
            if dept not in DEPARTMENTS:
                raise RuleError(f"unknown department {dept!r} in {node.func.id}({dept})")
            return Term(f"{node.func.id}:{dept}")
        raise RuleError(f"{ast.unparse(node)!r} is not allowed: use dept.indicator, and/or/not, absent(dept), present(dept)")

    return build(tree)


def _terms(condition: Condition):
    if isinstance(condition, Term):
        yield condition.key
    elif isinstance(condition, Not):
        yield from _terms(condition.inner)
    else:
        for part in condition.parts:
            yield from _terms(part)
