"""Flags: each need routed to the departments holding the person, explained
in plain language, and followed over time against the previous run."""
from __future__ import annotations

from datetime import date

import numpy as np
from sqlalchemy import select

from server import queries as q
from server import store as t
from server.pipeline.link import Linkage
from server.pipeline.needs import NeedFlag


def person_scores(linkage: Linkage, persons: np.ndarray) -> dict[int, list[tuple[int, int, float]]]:
    """The links inside each of the given persons: (department a, department b, Dice score)."""
    wanted = np.zeros(linkage.persons, dtype=bool)
    wanted[persons] = True
    out: dict[int, list[tuple[int, int, float]]] = {}
    for (a, b), p in linkage.pairs.items():
        inside = linkage.linked_pairs(a, b)
        who = linkage.person_labels(a)[p.left[inside]]
        keep = wanted[who]
        for person, score in zip(who[keep].tolist(), p.score[inside][keep].tolist()):
            out.setdefault(person, []).append((a, b, round(score, 4)))
    return out


def _label(term: str, from_household: bool = False) -> str:
    """An indicator by name, in words: 'below subsistence line (civil affairs)'."""
    if term.startswith("absent:"):
        return f"no {term[7:].replace('_', ' ')} record"
    neg = term.startswith("not ")
    dept, _, ind = term.removeprefix("not ").partition(".")
    where = dept.replace("_", " ") + (", from a household member's record" if from_household else "")
    return f"{'not ' if neg else ''}{ind.replace('_', ' ')} ({where})"


def _strength(scores: list[float]) -> str:
    low = min(scores)
    word = "strong" if low >= 0.9 else "good" if low >= 0.8 else "moderate"
    return f"match strength {word} (lowest score of this record's links {low:.2f})"


def explain(flag: NeedFlag, departments: list[str], scores: list[float], household_terms: set[str] = frozenset()
            ) -> str:
    """The caseworker's plain-language reason: what the rule looks for, which
    rule and tier, the indicators that fired by name (and which of them came
    from the household), the departments the person was linked across and how
    strong this record's links are."""
    fired = "; ".join(f"{rule} found " + ", ".join(_label(x, x in household_terms) for x in terms)
                      for rule, terms in flag.reasons)
    across = ", ".join(d.replace("_", " ") for d in departments)
    if len(departments) < 2:
        how = f"Found in {across} only (no link to another department)."
    else:
        how = f"Linked across {len(departments)} departments ({across})" + (f"; {_strength(scores)}." if scores
                                                                             else ".")
    return f"{flag.explanation[0].upper()}{flag.explanation[1:]} (tier {flag.tier}). Rule {fired}. {how}"


def route_flags(linkage: Linkage, flags: list[NeedFlag], facts: dict[str, np.ndarray]) -> list[dict]:
    names = [d.department for d in linkage.departments]
    holders_of = {name: linkage.record_of_person(i) for i, name in enumerate(names)}
    persons = np.array(sorted({f.person for f in flags}), dtype=np.int64)
    scores = person_scores(linkage, persons) if persons.size else {}
    # Household indicators a person holds through another member's record, for the explanation.
    borrowed: dict[int, set[str]] = {}
    for key, v in facts.items():
        if key.startswith("household:"):
            for p in np.flatnonzero(np.asarray(v)[persons] if persons.size else []).tolist():
                borrowed.setdefault(int(persons[p]), set()).add(key.removeprefix("household:"))
    rows = []
    for f in flags:
        holders = [d for d in names if holders_of[d][f.person] >= 0]
        targets = [d for d in f.route if d in holders] or holders
        for d in targets:
            # Only the links that touch this department's own record: what its caseworker needs to judge
            # the match, and nothing about how two other departments' records compare.
            own = names.index(d)
            s = [score for a, b, score in scores.get(f.person, []) if own in (a, b)]
            detail = {
                "reasons": [{"rule": rule, "indicators": list(terms)} for rule, terms in f.reasons],
                "departments_linked": len(holders),
                "match_scores": s,
                "explanation": explain(f, holders, s, borrowed.get(f.person, set())),
            }
            rows.append({"department": d, "record_id": int(holders_of[d][f.person]), "person": f.person,
                         "need": f.need, "tier": f.tier, "detail": detail})
    return rows


def add_months(day: date, months: int) -> date:
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    last = [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31, 30, 31, 31, 30, 31,
            30, 31][month - 1]
    return date(year, month, min(day.day, last))


def track_over_time(conn, project_id: str, run_id: str, as_of: date, rows: list[dict], ref_of: dict[int, bytes],
                    pack) -> list[dict]:
    """Compare this run's flags with the previous run's, by (department,
    reference, need): new or continuing; a need that ended enters a gradual-exit
    transition (for the pack's transition needs) and is then resolved. Flags a
    caseworker reviewed as "not in need" are not raised again until their
    suppression ends."""
    today = as_of.isoformat()
    prev_run = q.previous_done_run(conn, project_id, run_id)  # by run number: a clock that steps cannot reorder
    previous = {}
    if prev_run:
        for f in conn.execute(select(t.flags, t.records.c.ref).join(t.records, t.records.c.id == t.flags.c.record_id)
                              .where(t.flags.c.run_id == prev_run)):
            previous[(f.department, f.ref, f.need)] = f
    suppressed = {(o.department, o.ref, o.need) for o in conn.execute(select(t.outcomes).where(
        (t.outcomes.c.project_id == project_id) & (t.outcomes.c.outcome == "not_in_need")
        & (t.outcomes.c.suppressed_until > today)))}
    months = int(pack.param("transition_months"))
    out, current = [], set()
    for r in rows:
        key = (r["department"], ref_of[r["record_id"]], r["need"])
        current.add(key)  # a suppressed flag still holds: it is withheld, not resolved
        if key in suppressed:
            continue
        p = previous.get(key)
        since = p.since if p is not None and p.status != "resolved" else today
        until = add_months(date.fromisoformat(since), months).isoformat() if r["need"] == "gradual_exit" else None
        out.append({**r, "status": "continuing" if since != today else "new", "since": since,
                    "transition_until": until})
    # A record the department's current extract no longer holds is not followed into a transition: the
    # department has no record to support, so its open flags resolve (moved away, died, register cleaned).
    held = set(ref_of.values())
    for key, p in previous.items():
        if key in current or p.status == "resolved":
            continue
        gone = key[1] not in held
        if gone:
            status, until = "resolved", None
        elif p.status == "transition":
            status, until = ("transition", p.transition_until) if today < p.transition_until else ("resolved", None)
        elif p.need in pack.transition_needs:
            status, until = "transition", add_months(as_of, months).isoformat()
        else:
            status, until = "resolved", None
        detail = dict(p.detail)
        detail["found"] = p.detail.get("found", p.detail["explanation"])  # why it was first raised, kept once
        detail["explanation"] = (
            "The record is no longer in this department's extract: resolved. " if gone else
            f"No longer found in this run; support continues until {until} (gradual exit). "
            if status == "transition" else "No longer found in this run: resolved. ") + detail["found"]
        out.append({"department": p.department, "record_id": p.record_id, "person": -1, "need": p.need,
                    "tier": p.tier, "status": status, "since": p.since, "transition_until": until, "detail": detail})
    return out
