"""Reads of the audit log: its signed head for anyone, consistency proofs for
anyone (agents check the log at every contact), inclusion proofs and events
for officers. Every read is itself logged: an officer's each time, the
head and consistency reads every party makes at every contact once per
burst with a count (server/bursts.py), so reading cannot grow the log
without bound."""
from __future__ import annotations

from typing import Iterator

from fedlink.audit import TreeHead
from fedlink.identity import Identity
from server.domain.access import Context, InvalidArgument, guarded


class AuditReads:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    @property
    def public_pem(self) -> str:
        """The key the tree heads are signed with."""
        return self.ctx.audit_log.public_pem

    def tree_head(self, who: Identity) -> TreeHead:
        head = self.ctx.audit_log.tree_head()
        self.ctx.bursts.note(str(who), "audit.read", "GetTreeHead", tree_size=head.tree_size)
        return head

    @guarded("GetConsistencyProof")
    def consistency_proof(self, who: Identity, old_size: int, new_size: int) -> list[bytes]:
        try:
            proof = self.ctx.audit_log.consistency(old_size, new_size)
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
        self.ctx.bursts.note(str(who), "audit.read", "GetConsistencyProof", old_size=old_size, new_size=new_size)
        return proof

    @guarded("GetInclusionProof", "officer")
    def inclusion_proof(self, who: Identity, index: int, size: int) -> list[bytes]:
        try:
            proof = self.ctx.audit_log.inclusion(index, size)
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
        with self.ctx.store.write() as conn:
            self.ctx.store.audit(conn, str(who), "audit.read", method="GetInclusionProof", index=index,
                                 tree_size=size)
        return proof

    @guarded("ListAuditEvents", "officer")
    def events(self, who: Identity, start: int = 0, end: int = 0, **filters) -> Iterator[tuple[int, str]]:
        """Events up to the current head; the read itself is logged after them."""
        kind = filters.get("kind")
        if kind and kind not in self.ctx.audit_log.kinds():
            raise InvalidArgument(f"kind {kind[:60]!r} is not a kind of audit event; the kinds are: "
                                  + ", ".join(self.ctx.audit_log.kinds()))
        head = self.ctx.audit_log.tree_head()
        end = min(end or head.tree_size, head.tree_size)
        with self.ctx.store.write() as conn:
            self.ctx.store.audit(conn, str(who), "audit.read", method="ListAuditEvents", start=start, end=end,
                                 filters={k: v for k, v in filters.items() if v})
        return self.ctx.audit_log.events(start, end, **filters)
