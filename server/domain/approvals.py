"""Dual control: what can widen what anyone learns is proposed by an operator
and applied only when a privacy officer approves it.

A proposal is one of: a new rule pack (rules, routing, evidence and
disclosure policy, suppression k, parameters: everything in the pack), the
linkage threshold settings, or a reset of the pinned key check. It records
what it would change and who would newly learn what (server/domain/changes.py),
computed against the project as it was proposed; if the project changes before
the decision, the proposal is superseded rather than applied to something its
officer never saw. The approver must be an officer and not the proposer (by
certificate name, whatever the roles). Suppression k never goes below the
floor fixed at the project's creation, approved or not. Pending proposals
expire after `PROPOSAL_DAYS`. Every step is an audit event."""
from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, replace

from fedlink.identity import Identity, IdentityError, validate_label
from fedlink.rules import load_rulepack
from fedlink.schema import Project, SchemaError
from server import queries as q
from server.domain.access import (
    Context, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, checked_oidc, existing_project,
    guarded,
)
from server.domain.changes import Diff, key_check_reset_diff, linkage_diff, rule_changes, rules_diff

PROPOSAL_DAYS = 14
KINDS = ("rules", "linkage", "key_check_reset")


@dataclass(frozen=True)
class Proposal:
    proposal_id: str
    project_id: str
    kind: str
    state: str            # pending, approved, rejected, expired, superseded
    reason: str
    proposed_by: str
    proposed_at: float
    expires_at: float
    decided_by: str
    decided_at: float
    note: str
    diff: Diff
    change: dict          # rules: {rules_toml}; linkage: {threshold, auto_threshold}; key_check_reset: {}


def _proposal(row) -> Proposal:
    return Proposal(row.proposal_id, row.project_id, row.kind, row.state, row.reason, row.proposed_by,
                    row.proposed_at, row.expires_at, row.decided_by or "", row.decided_at or 0.0, row.note or "",
                    Diff.from_json(row.diff), dict(row.change))


def _digest(text: str | bytes | None) -> str:
    raw = text.encode() if isinstance(text, str) else (text or b"")
    return hashlib.sha256(raw).hexdigest()


def _base(conn, project: Project, kind: str) -> str:
    """What a proposal of `kind` is decided against: it must still hold when approved."""
    if kind == "rules":
        return _digest(project.rules_toml)
    if kind == "linkage":
        return project.digest()
    pinned = q.pinned_key_check(conn, project.project_id)
    return _digest(pinned.key_check)


def _name(actor: str) -> str:
    """The certificate name of a stored actor ("operator:alice" -> "alice")."""
    return actor.partition(":")[2]


class Approvals:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    @guarded("ProposeChange", "operator")
    def propose(self, who: Identity, project_id: str, kind: str, change: dict, reason: str = "") -> Proposal:
        if kind not in KINDS:
            raise InvalidArgument(f"a proposal changes one of {', '.join(KINDS)}; the request names none")
        with self.ctx.store.write() as conn:
            project = existing_project(conn, project_id)
            change, diff = self._check(conn, project, kind, change)
            if not diff.items:
                raise FailedPrecondition(f"the proposed {kind} change is what project {project_id} has already")
            proposal_id = uuid.uuid4().hex[:16]
            q.insert_proposal(conn, proposal_id=proposal_id, project_id=project_id, kind=kind, change=change,
                              base=_base(conn, project, kind), diff=diff.to_json(), reason=reason,
                              proposed_by=str(who), expires_at=time.time() + PROPOSAL_DAYS * 86400)
            self.ctx.store.audit(conn, str(who), "proposal.create", project_id=project_id, proposal_id=proposal_id,
                                 change=kind, reason=reason, items=[f"{i.area}:{i.item}" for i in diff.items],
                                 widens=any(i.widens for i in diff.items), newly_disclosed=list(diff.newly_disclosed))
            return _proposal(q.proposal(conn, proposal_id))

    def _check(self, conn, project: Project, kind: str, change: dict) -> tuple[dict, Diff]:
        """The change as stored, and its diff; InvalidArgument when it could never be applied."""
        if kind == "rules":
            text = change.get("rules_toml", "")
            try:
                pack = load_rulepack(text, source=f"project {project.project_id} rules")
            except ValueError as e:
                raise InvalidArgument(str(e)) from None
            _check_floor(project, pack.suppression_k)
            return {"rules_toml": text}, rules_diff(project.rules_toml, text)
        if kind == "linkage":
            threshold, auto = float(change.get("threshold", 0.0)), bool(change.get("auto_threshold", False))
            try:
                replace(project.schema, threshold=threshold, auto_threshold=auto).validate()
            except SchemaError as e:
                raise InvalidArgument(str(e)) from None
            return {"threshold": threshold, "auto_threshold": auto}, linkage_diff(project.schema, threshold, auto)
        pinned = q.pinned_key_check(conn, project.project_id)
        if pinned.key_check is None:
            raise FailedPrecondition(f"project {project.project_id} has no pinned key check to reset")
        return {}, key_check_reset_diff(pinned.key_check_by)

    @guarded("ListProposals", "operator", "officer")
    def list(self, who: Identity, project_id: str = "", state: str = "") -> list[Proposal]:
        self.expire_overdue()
        with self.ctx.store.read() as conn:
            return [_proposal(r) for r in q.proposals(conn, project_id, state)]

    @guarded("GetProposal", "operator", "officer")
    def get(self, who: Identity, proposal_id: str) -> Proposal:
        self.expire_overdue()
        with self.ctx.store.read() as conn:
            return _proposal(self._row(conn, proposal_id))

    @guarded("ApproveProposal", "officer", "console")
    def approve(self, who: Identity, proposal_id: str, note: str = "", on_behalf_of: str = "",
                oidc: str = "") -> Proposal:
        self.expire_overdue()
        acting, via = _acting(who, on_behalf_of, oidc)
        with self.ctx.store.write() as conn:
            row = self._pending(conn, who, proposal_id, "approve", acting)
            project = existing_project(conn, row.project_id)
            if _base(conn, project, row.kind) == row.base:
                self._check(conn, project, row.kind, dict(row.change))  # the floor holds at approval too
                q.decide_proposal(conn, proposal_id, "approved", str(acting), note)
                self.ctx.store.audit(conn, str(acting), "proposal.approve", project_id=row.project_id,
                                     proposal_id=proposal_id, change=row.kind, proposed_by=row.proposed_by,
                                     note=note or None, **via)
                self._apply(conn, acting, project, row)
                return _proposal(q.proposal(conn, proposal_id))
            # Committed before the refusal below: the proposal is superseded for good.
            q.decide_proposal(conn, proposal_id, "superseded", "coordinator",
                              f"the project's {row.kind} changed after it was proposed")
            self.ctx.store.audit(conn, "coordinator", "proposal.superseded", project_id=row.project_id,
                                 proposal_id=proposal_id, change=row.kind, attempted_by=str(acting), **via)
        raise FailedPrecondition(f"proposal {proposal_id} was made against {row.kind} settings that changed "
                                 "since; what it shows is no longer what it would do: propose it again")

    @guarded("RejectProposal", "officer", "console")
    def reject(self, who: Identity, proposal_id: str, note: str = "", on_behalf_of: str = "",
               oidc: str = "") -> Proposal:
        self.expire_overdue()
        acting, via = _acting(who, on_behalf_of, oidc)
        with self.ctx.store.write() as conn:
            row = self._pending(conn, who, proposal_id, "reject", acting)
            q.decide_proposal(conn, proposal_id, "rejected", str(acting), note)
            self.ctx.store.audit(conn, str(acting), "proposal.reject", project_id=row.project_id,
                                 proposal_id=proposal_id, change=row.kind, proposed_by=row.proposed_by,
                                 note=note or None, **via)
            return _proposal(q.proposal(conn, proposal_id))

    def expire_overdue(self) -> None:
        """Pending proposals past their time expire (audited), whenever proposals are read or decided."""
        with self.ctx.store.write() as conn:
            for row in q.overdue_proposals(conn, time.time()):
                q.decide_proposal(conn, row.proposal_id, "expired", "coordinator",
                                  f"not decided within {PROPOSAL_DAYS} days")
                self.ctx.store.audit(conn, "coordinator", "proposal.expire", project_id=row.project_id,
                                     proposal_id=row.proposal_id, change=row.kind, proposed_by=row.proposed_by)

    @staticmethod
    def _row(conn, proposal_id: str):
        row = q.proposal(conn, proposal_id)
        if row is None:
            raise NotFound(f"proposal {proposal_id!r} does not exist")
        return row

    def _pending(self, conn, who: Identity, proposal_id: str, verb: str, acting: Identity):
        row = self._row(conn, proposal_id)
        if row.state != "pending":
            raise FailedPrecondition(f"proposal {proposal_id} is {row.state}"
                                     + (f" (by {row.decided_by})" if row.decided_by else "") + f"; cannot {verb} it")
        # Neither the deciding officer nor a console relaying for them may be the proposer.
        if _name(row.proposed_by) in (who.name, acting.name):
            raise PermissionDenied(f"proposal {proposal_id} was made by {row.proposed_by}; another officer must "
                                   f"{verb} it (no one decides on their own proposal)")
        return row

    def _apply(self, conn, who: Identity, project: Project, row) -> None:
        actor, pid = str(who), project.project_id
        change = dict(row.change)
        if row.kind == "rules":
            old, new = load_rulepack(project.rules_toml), load_rulepack(change["rules_toml"])
            q.set_rules(conn, pid, change["rules_toml"])
            self.ctx.store.audit(conn, actor, "rules.update", project_id=pid, proposal_id=row.proposal_id,
                                 proposed_by=row.proposed_by, **rule_changes(old, new))
        elif row.kind == "linkage":
            schema = replace(project.schema, threshold=change["threshold"], auto_threshold=change["auto_threshold"])
            q.set_schema(conn, replace(project, schema=schema))
            self.ctx.store.audit(conn, actor, "linkage.update", project_id=pid, proposal_id=row.proposal_id,
                                 proposed_by=row.proposed_by, threshold=[project.schema.threshold, schema.threshold],
                                 auto_threshold=[project.schema.auto_threshold, schema.auto_threshold])
        else:
            # Every upload so far matched the forgotten value: none is known to share the key the next
            # upload pins, so none is linked with what comes after. Each department uploads again.
            was = q.pinned_key_check(conn, pid).key_check_by
            q.reset_key_check(conn, pid)
            withdrawn = q.withdraw_committed_uploads(conn, pid)
            self.ctx.store.audit(conn, actor, "project.key_check_reset", project_id=pid, proposal_id=row.proposal_id,
                                 proposed_by=row.proposed_by, was_pinned_by=was, uploads_withdrawn=withdrawn)


def _acting(who: Identity, on_behalf_of: str, oidc: str = "") -> tuple[Identity, dict]:
    """Who decides: an officer calling with their own certificate, or the officer signed in to the
    console, whose decision only a console's certificate relays (`via`). An officer's certificate that
    names another person is refused: it would let any officer decide in a colleague's name."""
    if who.role == "officer" and on_behalf_of:
        raise PermissionDenied(f"on_behalf_of is for the console's certificate (role console) alone; {who} decides "
                               "only as itself: leave on_behalf_of out, or decide on the console")
    if who.role == "console" and not on_behalf_of:
        raise PermissionDenied(f"{who} decides for no one of its own: it relays the decision of the officer "
                               "signed in to it (on_behalf_of officer:NAME)")
    if not on_behalf_of:
        if oidc:
            raise InvalidArgument("oidc names the person a console relays for: it comes with on_behalf_of")
        return who, {}
    role, _, name = on_behalf_of.partition(":")
    if role != "officer":
        raise PermissionDenied(f"on_behalf_of {on_behalf_of[:80]!r}: only an officer decides on a proposal")
    try:
        acting = Identity("officer", validate_label(name, "officer name"))
    except IdentityError as e:
        raise InvalidArgument(f"on_behalf_of: {e}") from None
    return acting, {"via": str(who), **({"oidc": checked_oidc(oidc, name)} if oidc else {})}


def _check_floor(project: Project, k: int) -> None:
    if k < project.suppression_floor:
        raise InvalidArgument(
            f"suppression_k = {k} is below project {project.project_id}'s floor of {project.suppression_floor}, "
            "fixed when the project was created; no approval lowers it")
