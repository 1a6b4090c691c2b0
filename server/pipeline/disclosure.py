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
from server.pipeline import wording

FIRST_SEEN_NOTE = ("Part of this evidence comes from records first seen in another register's latest upload: "
                   "confirm it with that register before acting.")
FIRST_SEEN_NOTE_ZH = "部分依据来自另一部门最近一次上传中新出现的记录：请先与该部门核实。"


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
    match_departments: tuple[str, ...]                 # the department of each score; () where withheld
    explanation: str
    explanation_zh: str
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
    links = list(detail.get("match_departments", []))
    if not policy.departments_linked:  # which departments hold the person is withheld: the weakest link only
        holders, scores, links = [], scores and [min(scores)], []
    first_seen = bool(detail.get("first_seen"))
    household = set(detail.get("household_terms", []))
    texts = {}
    for lang in wording.LANGUAGES:
        lead = _lead(detail, pack, lang, need)
        text = wording.explanation(lead, detail.get("tier", 0), reasons, holders, scores, household, lang)
        follow = detail.get("follow_up")
        texts[lang] = "".join(p for p in (
            wording.follow_up(follow["gone"], follow["until"], lang) if follow else "", text,
            (FIRST_SEEN_NOTE_ZH if lang == "zh" else " " + FIRST_SEEN_NOTE) if first_seen else "") if p)
    return FlagView(tuple(reasons), len(holders), tuple(scores), tuple(links), texts["en"], texts["zh"], first_seen,
                    tuple(sorted(disclosed)))


def _lead(detail: dict, pack: RulePack, lang: str, need: str) -> str:
    """What the rule looks for, as the pack words it (kept with the flag when it was raised)."""
    key = "explain_zh" if lang == "zh" else "explain"
    if detail.get(key):
        return detail[key]
    first = (detail.get("reasons") or [{}])[0].get("rule")  # a flag stored before the text was kept with it
    rule = next((r for r in pack.rules if r.name == first), None)
    if lang == "zh":
        return (rule.explain_zh if rule and rule.explain_zh else wording.NEED_NAMES_ZH.get(need, need))
    return rule.explain if rule else "a need found by the rule pack"
