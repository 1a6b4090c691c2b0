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
from server.pipeline.disclosure import FlagView, view

OUTCOMES = ("confirmed", "assistance_granted", "not_in_need", "wrong_person")


@dataclass(frozen=True)
class Recorded:
    suppressed_until: str = ""   # ISO date, for not_in_need
    previous_outcome: str = ""   # the review this one supersedes ("" for the first)
    previous_run_id: str = ""
    previous_recorded_at: float = 0.0


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
    match_departments: tuple[str, ...] = ()  # the department of each match score, where the policy shows it
    explanation_zh: str = ""      # the explanation in Chinese
    rests_on_first_seen: bool = False  # part of the evidence is another department's new records
    upload_id: str = ""           # the department's upload the run used (the agent joins its copy of it)


def _flag(run_id: str, upload_id: str, row, seen: FlagView) -> Flag:
    return Flag(row.ref, row.need, row.tier, run_id, row.status, row.since, row.transition_until or "",
                tuple(Reason(rule, terms) for rule, terms in seen.reasons), seen.departments_linked,
                seen.match_scores, seen.explanation, seen.match_departments, seen.explanation_zh,
                seen.rests_on_first_seen, upload_id)


class Reviews:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    @guarded("PullFlags", "agent")
    def flags(self, who: Identity, project_id: str, run_id: str = "", department: str = "") -> list[Flag]:
        """The caller's own department's flags of a run (the latest finished one
        by default), each as the project's current disclosure policy lets the
        department see it; what it discloses of other departments' evidence
        is counted in the delivery's audit event."""
        if department and department != who.department:
            raise PermissionDenied(f"your certificate is for {who.department}; you cannot pull the flags "
                                   f"of {department}")
        with self.ctx.store.write() as conn:
            project = existing_project(conn, project_id)
            require_member(who, project)
            run = q.latest_done_run(conn, project_id, run_id)
            if run is None:
                raise NotFound(f"project {project_id} has no finished run" + (f" {run_id!r}" if run_id else ""))
            if run.purged_at is not None:
                raise FailedPrecondition(f"run {run.run_id}'s flags were deleted under the coordinator's retention "
                                         "(only the latest runs' are kept); pull the latest run's flags")
            rows = q.department_flags(conn, run.run_id, who.department)
            pack = load_rulepack(project.rules_toml, source=f"project {project_id} rules")
            views = [view(r.detail, r.need, who.department, pack) for r in rows]
            disclosed: dict[str, int] = {}
            for v in views:
                for kind in v.disclosed:
                    disclosed[kind] = disclosed.get(kind, 0) + 1
            self.ctx.store.audit(conn, str(who), "flags.deliver", project_id=project_id,
                                 department=who.department, run_id=run.run_id, flags=len(rows),
                                 disclosed=disclosed, rests_on_first_seen=sum(v.rests_on_first_seen for v in views))
        upload_id = (run.uploads or {}).get(who.department, "")  # the upload of this department the run used
        return [_flag(run.run_id, upload_id, r, v) for r, v in zip(rows, views)]

    @guarded("RecordOutcome", "agent")
    def record_outcome(self, who: Identity, project_id: str, ref: bytes, need: str, outcome: str,
                       run_id: str) -> "Recorded":
        """A caseworker's review of one of the department's flags: the date until
        which a "not in need" flag is not raised again, and this reviewer's review
        of the same record and need before this one, which it supersedes (both
        stay audited; the report counts flags, not calls)."""
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
            before = q.latest_outcome(conn, project_id, who.department, ref, need, str(who))
            q.insert_outcome(conn, project_id=project_id, department=who.department, ref=ref, need=need, rule=rule,
                             run_id=run_id, outcome=outcome, suppressed_until=until or None, recorded_by=str(who))
            self.ctx.store.audit(conn, str(who), "review.outcome", project_id=project_id, department=who.department,
                                 run_id=run_id, flag=flag.id, need=need, rule=rule, outcome=outcome,
                                 suppressed_until=until or None,
                                 supersedes=before.outcome if before else None)
        if before is None:
            return Recorded(until)
        return Recorded(until, before.outcome, before.run_id, before.recorded_at)
