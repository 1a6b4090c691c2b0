"""The audit log's calls: its checkpoint and consistency proofs for anyone
(agents and officers witness the log at every contact), cosignatures from the
project's witnesses, inclusion proofs and events for officers. Every call is
itself logged: an officer's reads each time, the checkpoint and consistency
reads and the cosignatures every party sends at every contact once per burst
with a count (server/bursts.py), so witnessing cannot grow the log without
bound. A log the coordinator found tampered with is served to no one: every
call says why (DATA_LOSS)."""
from __future__ import annotations

from typing import Iterator

from fedlink.checkpoint import parse_checkpoint
from fedlink.identity import Identity
from server.audit import LogTampered, Served
from server.domain.access import Context, DomainError, FailedPrecondition, InvalidArgument, guarded


class LogUnavailable(DomainError):
    """The stored log is not the one signed (server/audit.py): nothing is signed or served."""
    code = "DATA_LOSS"


def _served(call):
    """LogTampered as DATA_LOSS, saying what was found and what to do."""
    def checked(*args, **kwargs):
        try:
            return call(*args, **kwargs)
        except LogTampered as e:
            raise LogUnavailable(f"the coordinator's audit log was tampered with and it signs and serves nothing: "
                                 f"{e}. The operator must restore the database from a backup") from None
    return checked


class AuditReads:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    @_served
    def checkpoint(self, who: Identity) -> Served:
        served = self.ctx.audit_log.checkpoint(who.department if who.role == "agent" else "")
        self.ctx.bursts.note(str(who), "audit.read", "GetCheckpoint", tree_size=parse_checkpoint(served.checkpoint.text).size)
        return served

    @property
    def log_key(self) -> str:
        return self.ctx.audit_log.log_key.encode()

    @guarded("AddCosignature", "agent", "officer")
    @_served
    def add_cosignature(self, who: Identity, cosigned: str) -> list[str]:
        self.ctx.audit_log.size  # a tampered log takes no cosignatures either
        try:
            kept = self.ctx.audit_log.add_cosignature(cosigned)
        except ValueError as e:
            raise FailedPrecondition(str(e)) from None
        self.ctx.bursts.note(str(who), "audit.cosign", "AddCosignature", witnesses=kept)
        return kept

    @guarded("GetConsistencyProof")
    @_served
    def consistency_proof(self, who: Identity, old_size: int, new_size: int) -> list[bytes]:
        try:
            proof = self.ctx.audit_log.consistency(old_size, new_size, who.department if who.role == "agent" else "")
        except LogTampered:
            raise
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
        self.ctx.bursts.note(str(who), "audit.read", "GetConsistencyProof", old_size=old_size, new_size=new_size)
        return proof

    @guarded("GetInclusionProof", "officer")
    @_served
    def inclusion_proof(self, who: Identity, index: int, size: int) -> list[bytes]:
        try:
            proof = self.ctx.audit_log.inclusion(index, size)
        except LogTampered:
            raise
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
        with self.ctx.store.write() as conn:
            self.ctx.store.audit(conn, str(who), "audit.read", method="GetInclusionProof", index=index,
                                 tree_size=size)
        return proof

    @guarded("ListAuditEvents", "officer")
    @_served
    def events(self, who: Identity, start: int = 0, end: int = 0, **filters) -> Iterator[tuple[int, str]]:
        """Events up to the current checkpoint; the read itself is logged after them."""
        known = self.ctx.audit_log.kinds()
        for kind in (filters.get("kind") or "", *filters.get("kinds", ())):
            if kind and kind not in known:
                raise InvalidArgument(f"kind {kind[:60]!r} is not a kind of audit event; the kinds are: "
                                      + ", ".join(known))
        size = self.ctx.audit_log.size
        end = min(end or size, size)
        with self.ctx.store.write() as conn:
            self.ctx.store.audit(conn, str(who), "audit.read", method="ListAuditEvents", start=start, end=end,
                                 filters={k: v for k, v in filters.items() if v})
        return self.ctx.audit_log.events(start, end, **filters)
