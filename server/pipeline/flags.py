"""Flags: each need routed by the disclosure policy to the one department that
acts on it, held back where it could answer a probe, and followed over time
against the previous run."""
from __future__ import annotations

from datetime import date

import numpy as np
from sqlalchemy import select

from server import queries as q
from server import store as t
from fedlink.rules import RulePack
from server.pipeline.disclosure import route
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


def route_flags(linkage: Linkage, flags: list[NeedFlag], facts: dict[str, np.ndarray], pack: RulePack,
                new_records: dict[str, np.ndarray] | None = None) -> list[dict]:
    """One flag row per found need, for the department the disclosure policy
    routes it to (pipeline/disclosure.py). `new_records`: per department, a
    mask over its records first seen in its latest upload. The row's detail
    keeps the whole evidence; what the recipient reads is rendered from it at
    delivery."""
    names = [d.department for d in linkage.departments]
    holders_of = {name: linkage.record_of_person(i) for i, name in enumerate(names)}
    new_of = {}
    for i, name in enumerate(names):
        mask = (new_records or {}).get(name)
        new = np.zeros(linkage.persons, dtype=bool)
        if mask is not None and mask.any():
            new[linkage.person_labels(i)[mask]] = True
        new_of[name] = new
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
        terms = [t for _, ts in f.reasons for t in ts]
        where = route(pack.disclosure.get(f.need), holders, terms, {d for d in holders if new_of[d][f.person]})
        if where.recipient is None:
            continue  # no department the policy names holds the person: nobody may be told
        d = where.recipient
        # Only the links that touch this department's own record: what its caseworker needs to judge
        # the match, and nothing about how two other departments' records compare.
        own = names.index(d)
        links = [(names[b if a == own else a], score) for a, b, score in scores.get(f.person, []) if own in (a, b)]
        detail = {
            "reasons": [{"rule": rule, "indicators": list(ts)} for rule, ts in f.reasons],
            "household_terms": sorted(borrowed.get(f.person, set())),
            "holders": holders, "match_scores": [score for _, score in links],
            "match_departments": [other for other, _ in links],  # the department each score links to
            "explain": f.explanation, "explain_zh": f.explanation_zh, "tier": f.tier,
            "first_seen": list(where.first_seen), "held": where.held,
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
    prev = q.previous_done_run(conn, project_id, run_id)  # by run number: a clock that steps cannot reorder
    prev_run = prev.run_id if prev is not None else None
    previous = {}
    if prev_run:
        for f in conn.execute(select(t.flags, t.records.c.ref).join(t.records, t.records.c.id == t.flags.c.record_id)
                              .where(t.flags.c.run_id == prev_run)):
            previous[(f.department, f.ref, f.need)] = f
    suppressed = {(o.department, o.ref, o.need) for o in q.latest_outcomes(conn, project_id)
                  if o.outcome == "not_in_need" and (o.suppressed_until or "") > today}
    months = int(pack.param("transition_months"))
    out, current = [], set()
    for r in rows:
        key = (r["department"], ref_of[r["record_id"]], r["need"])
        current.add(key)  # a suppressed flag still holds: it is withheld, not resolved
        if key in suppressed:
            continue
        p = previous.get(key)
        if r["detail"].pop("held", False):  # kept, not delivered: a flag only if the record persists
            out.append({**r, "status": "held", "since": today, "transition_until": None})
            continue
        since = p.since if p is not None and p.status not in ("resolved", "held") else today
        until = add_months(date.fromisoformat(since), months).isoformat() if r["need"] == "gradual_exit" else None
        out.append({**r, "status": "continuing" if since != today else "new", "since": since,
                    "transition_until": until})
    # A record the department's current extract no longer holds is not followed into a transition: the
    # department has no record to support, so its open flags resolve (moved away, died, register cleaned).
    held = set(ref_of.values())
    for key, p in previous.items():
        if key in current or p.status in ("resolved", "held"):
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
        # The follow-up comes before why it was first raised, which the detail keeps (pipeline/disclosure.py).
        detail = {**p.detail, "follow_up": {"gone": gone, "until": until if status == "transition" else None}}
        out.append({"department": p.department, "record_id": p.record_id, "person": -1, "need": p.need,
                    "tier": p.tier, "status": status, "since": p.since, "transition_until": until, "detail": detail})
    return out
