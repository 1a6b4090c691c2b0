"""Reviews: the flags a department pulls and the outcome a caseworker records
for one. (Changes to the rules that raise them are proposals: approvals.py.)"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from fedlink.identity import Identity
from fedlink.rules import load_rulepack
from server import queries as q
from server.domain.access import (
    Context, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, existing_project, guarded, require_member,
)

OUTCOMES = ("confirmed", "assistance_granted", "not_in_need", "wrong_person")


@dataclass(frozen=True)
class Reason:
    rule: str                     # the rule that fired
    indicators: tuple[str, ...]   # the indicators that fired, by name


@dataclass(frozen=True)
class Flag:
    ref: bytes                    # the department's own encrypted reference
    need: str
    tier: int
    run_id: str
    status: str                   # new, continuing, transition, resolved (against the previous run)
    since: str                    # ISO date first flagged without a break
    transition_until: str         # ISO date support continues until, for a transition
    reasons: tuple[Reason, ...]
    departments_linked: int
    match_scores: tuple[float, ...]
    explanation: str              # plain language, for the caseworker


def _flag(run_id: str, row) -> Flag:
    d = row.detail
    return Flag(row.ref, row.need, row.tier, run_id, row.status, row.since, row.transition_until or "",
                tuple(Reason(r["rule"], tuple(r["indicators"])) for r in d["reasons"]), d["departments_linked"],
                tuple(d["match_scores"]), d["explanation"])


class Reviews:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    @guarded("PullFlags", "agent")
    def flags(self, who: Identity, project_id: str, run_id: str = "", department: str = "") -> list[Flag]:
        """The caller's own department's flags of a run (the latest finished one by default)."""
        if department and department != who.department:
            raise PermissionDenied(f"your certificate is for {who.department}; you cannot pull the flags "
                                   f"of {department}")
        with self.ctx.store.write() as conn:
            require_member(who, existing_project(conn, project_id))
            run = q.latest_done_run(conn, project_id, run_id)
            if run is None:
                raise NotFound(f"project {project_id} has no finished run" + (f" {run_id!r}" if run_id else ""))
            if run.purged_at is not None:
                raise FailedPrecondition(f"run {run.run_id}'s flags were deleted under the coordinator's retention "
                                         "(only the latest runs' are kept); pull the latest run's flags")
            rows = q.department_flags(conn, run.run_id, who.department)
            self.ctx.store.audit(conn, str(who), "flags.deliver", project_id=project_id,
                                 department=who.department, run_id=run.run_id, flags=len(rows))
        return [_flag(run.run_id, r) for r in rows]

    @guarded("RecordOutcome", "agent")
    def record_outcome(self, who: Identity, project_id: str, ref: bytes, need: str, outcome: str,
                       run_id: str) -> str:
        """A caseworker's review of one of the department's flags; returns the
        date until which a "not in need" flag is not raised again ("" otherwise)."""
        if outcome not in OUTCOMES:
            raise InvalidArgument(f"outcome {outcome[:40]!r} is not one of {', '.join(OUTCOMES)}")
        with self.ctx.store.write() as conn:
            project = existing_project(conn, project_id)
            require_member(who, project)
            flag = q.flag_on_record(conn, run_id, who.department, ref, need)
            if flag is None:
                raise NotFound(f"run {run_id!r} has no {need!r} flag on that record of {who.department}")
            until = ""
            if outcome == "not_in_need":
                days = load_rulepack(project.rules_toml).param("not_in_need_suppression_days")
                until = (date.fromisoformat(flag.as_of) + timedelta(days=int(days))).isoformat()
            rule = flag.detail["reasons"][0]["rule"] if flag.detail.get("reasons") else need
            q.insert_outcome(conn, project_id=project_id, department=who.department, ref=ref, need=need, rule=rule,
                             run_id=run_id, outcome=outcome, suppressed_until=until or None, recorded_by=str(who))
            self.ctx.store.audit(conn, str(who), "review.outcome", project_id=project_id, department=who.department,
                                 run_id=run_id, flag=flag.id, need=need, rule=rule, outcome=outcome,
                                 suppressed_until=until or None)
        return until
