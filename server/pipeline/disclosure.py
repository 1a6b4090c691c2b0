"""The disclosure policy enforced: who receives a flag, whether it is held
back, and what its recipient reads (fedlink/rules.py parses the policy).

A stored flag keeps the whole of its evidence (the coordinator holds every
indicator anyway); `view` renders the recipient's part under the project's
current policy each time the flag is delivered, so nothing outside the policy
reaches an agent, and a policy narrowed after a run applies to its flags too.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fedlink.rules import NEUTRAL, Disclosure, RulePack, evidence_kind, term_department

FIRST_SEEN_NOTE = ("Part of this evidence comes from records first seen in another register's latest upload: "
                   "confirm it with that register before acting.")


@dataclass(frozen=True)
class Routing:
    recipient: str | None     # None: no department the policy names holds the person
    held: bool                # on the recipient's own new record, resting on another department's facts
    first_seen: tuple[str, ...]  # other departments whose new records this flag's evidence rests on


def route(policy: Disclosure | None, holders: list[str], terms: Iterable[str], new_record_in: set[str]) -> Routing:
    """Where one flag goes. `terms`: the facts that held for it; `new_record_in`:
    the departments whose record of the person is first seen in their latest
    upload. A department that added a record and gets a flag on it that rests
    on others' facts could be probing: the flag is held until the record
    persists into a later run."""
    recipient = policy.recipient(holders) if policy is not None else None
    sources = {term_department(t) for t in terms}
    held = recipient in new_record_in and bool(sources - {recipient})
    first_seen = tuple(sorted((sources & new_record_in) - {recipient}))
    return Routing(recipient, held, first_seen)


@dataclass(frozen=True)
class FlagView:
    """What the recipient reads of one flag."""

    reasons: tuple[tuple[str, tuple[str, ...]], ...]   # (rule, indicators shown, NEUTRAL for the rest)
    departments_linked: int                            # 0: withheld by the policy
    match_scores: tuple[float, ...]
    explanation: str
    rests_on_first_seen: bool
    disclosed: tuple[str, ...]                         # other departments' evidence kinds shown


def view(detail: dict, need: str, recipient: str, pack: RulePack) -> FlagView:
    policy = pack.disclosure.get(need) or Disclosure(need, (), {})
    reasons, disclosed = [], set()
    for r in detail.get("reasons", []):
        shown = [t for t in r["indicators"] if policy.shows(recipient, t)]
        disclosed.update(evidence_kind(t) for t in shown if term_department(t) != recipient)
        withheld = len(shown) < len(r["indicators"])
        reasons.append((r["rule"], tuple(shown) + ((NEUTRAL,) if withheld else ())))
    holders = detail.get("holders") or []
    scores = list(detail.get("match_scores", []))
    if not policy.departments_linked:
        holders, scores = [], scores and [min(scores)]
    first_seen = bool(detail.get("first_seen"))
    text = explain(_explain_text(detail, pack), detail.get("tier", 0), reasons, holders, scores,
                   set(detail.get("household_terms", [])))
    text = " ".join(p for p in (detail.get("note", ""), text, FIRST_SEEN_NOTE if first_seen else "") if p)
    return FlagView(tuple(reasons), len(holders), tuple(scores), text, first_seen, tuple(sorted(disclosed)))


def _explain_text(detail: dict, pack: RulePack) -> str:
    if detail.get("explain"):
        return detail["explain"]
    rules = {r.name: r.explain for r in pack.rules}  # a flag stored before the text was kept with it
    first = (detail.get("reasons") or [{}])[0].get("rule")
    return rules.get(first, "a need found by the rule pack")


def label(term: str, from_household: bool = False) -> str:
    """An indicator by name, in words: 'below subsistence line (civil affairs)'."""
    if term == NEUTRAL:
        return term
    if term.startswith(("absent:", "present:")):
        kind, _, dept = term.partition(":")
        return f"{'no' if kind == 'absent' else 'a'} {dept.replace('_', ' ')} record"
    neg = term.startswith("not ")
    dept, _, ind = term.removeprefix("not ").partition(".")
    where = dept.replace("_", " ") + (", from a household member's record" if from_household else "")
    return f"{'not ' if neg else ''}{ind.replace('_', ' ')} ({where})"


def _strength(scores: list[float]) -> str:
    low = min(scores)
    word = "strong" if low >= 0.9 else "good" if low >= 0.8 else "moderate"
    return f"match strength {word} (lowest score of this record's links {low:.2f})"


def explain(what: str, tier: int, reasons, departments: list[str], scores: list[float],
            household_terms: set[str] = frozenset()) -> str:
    """The caseworker's plain-language reason: what the rule looks for, its
    tier, the rules and the indicators shown by name (and which came from the
    household), the departments linked across where the policy shows them, and
    how strong this record's links are."""
    fired = "; ".join(f"{rule} found " + ", ".join(label(x, x in household_terms) for x in terms)
                      for rule, terms in reasons)
    tier_text = f" (tier {tier})" if tier else ""
    if departments:
        across = ", ".join(d.replace("_", " ") for d in departments)
        how = (f"Found in {across} only (no link to another department)." if len(departments) < 2 else
               f"Linked across {len(departments)} departments ({across})" + (f"; {_strength(scores)}." if scores
                                                                               else "."))
    else:
        how = f"{_strength(scores)[0].upper()}{_strength(scores)[1:]}." if scores else ""
    return " ".join(p for p in (f"{what[0].upper()}{what[1:]}{tier_text}.", f"Rule {fired}." if fired else "",
                                how) if p)
